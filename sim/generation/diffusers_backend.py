"""The ``diffusers`` text-to-image backend: real Stable Diffusion through ``StableDiffusionPipeline``.

Construction (``generator.diffusers`` in a scenario, :class:`sim.config.DiffusersConfig`):

* the pipeline loads with ``StableDiffusionPipeline.from_pretrained(model, local_files_only=...,
  torch_dtype=...)``; a ``model`` that is an existing directory always loads with
  ``local_files_only=True`` (nothing is fetched for it). A failure to load (missing directory,
  incomplete files, hub unreachable, not in the cache) raises one
  :class:`~sim.models.hub.ModelLoadError` line naming the model and what to do;
* ``scheduler`` (a diffusers class name, e.g. ``DPMSolverMultistepScheduler``) replaces the
  pipeline's scheduler, built ``from_config`` of the pipeline's own scheduler configuration; an
  unknown or incompatible name is a ``ValueError`` listing valid ones;
* ``device: auto`` is CUDA when ``torch.cuda.is_available()``, else CPU; ``dtype: auto`` is
  float16 on CUDA and float32 on CPU. The pipeline's progress bar is off.

:meth:`DiffusersGenerator.generate` runs all ``N`` seeds of a request in **one batched pipeline
call** (the prompt repeated ``N`` times, one ``torch.Generator`` per seed on the device, so each
image is a function of its own seed), with ``steps`` and ``guidance_scale`` from the config and
the request's ``negative_prompt`` when ``use_negative_prompt``. Each image is encoded in the
configured format with :func:`sim.generation.render.encode_image` (the bytes that go on the air);
``pixels`` is the *decoded* encoding, i.e. what an error-free link delivers (for JPEG the decoded
JPEG), so an intact transfer matches ``pixels`` exactly, as with the surrogate.
``generation_score`` is ``None`` (a real model does not know its quality; pair this backend with
an assessor that looks at the image: ``clip``, ``brisque``, ``llm``). ``generation_time_s`` is the
measured wall-clock time of the batch divided by ``N`` (after ``torch.cuda.synchronize`` on CUDA)
when ``time_source: measured``, else ``generator.inference_time_s``.

Prompts longer than CLIP's 77 tokens are truncated by the text encoder, as in every Stable
Diffusion pipeline; diffusers' per-call log line about it is replaced by one Python warning per
generator.

torch and diffusers are imported only when a generator is built, so importing :mod:`sim` stays light.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np

from sim.config import DiffusersConfig
from sim.generation.base import GeneratedImage, GenerationRequest, validate_output_settings
from sim.generation.render import decode_image_checked, encode_image
from sim.models.hub import load_pretrained, resolve_device

#: Latent downsampling of Stable Diffusion's VAE: image sides must be multiples of it.
SD_SIZE_MULTIPLE = 8

_SETTING = "generator.diffusers"


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class _TruncationNotice(logging.Filter):
    """Counts and drops diffusers' "input was truncated" log line (one warning per generator instead)."""

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "truncated because CLIP can only handle sequences up to" in record.getMessage():
            self.hits += 1
            return False
        return True


_TRUNCATION = _TruncationNotice()


def resolve_dtype(dtype: str, device: str):
    """The torch dtype for a config ``dtype`` (``auto``: float16 on CUDA, float32 on CPU)."""
    import torch

    if dtype == "auto":
        return torch.float16 if device == "cuda" else torch.float32
    if dtype not in ("float16", "float32"):
        raise ValueError(f"{_SETTING}.dtype must be auto, float16 or float32, got {dtype!r}")
    return getattr(torch, dtype)


def _scheduler_error(name: object, compatible: list[str]) -> ValueError:
    preferred = [
        n for n in ("DPMSolverMultistepScheduler", "EulerDiscreteScheduler", "DDIMScheduler", "PNDMScheduler") if n in compatible
    ]
    examples = preferred + [n for n in compatible if n not in preferred]
    shown = ", ".join(examples[:8]) + (", ..." if len(examples) > 8 else "")
    return ValueError(
        f"{_SETTING}.scheduler {name!r} is not a diffusers scheduler compatible with this pipeline; "
        f"valid names include: {shown}"
    )


def scheduler_class(name: str, compatible_with: Any = None) -> type:
    """The diffusers scheduler class called ``name``.

    With ``compatible_with`` (a scheduler instance or class), ``name`` must also be one of the
    schedulers it lists as compatible. Raises ``ValueError`` listing valid names otherwise
    (without ``compatible_with``: examples from Stable Diffusion's family of schedulers).
    """
    import diffusers
    from diffusers import SchedulerMixin

    reference = compatible_with if compatible_with is not None else diffusers.PNDMScheduler
    ref_cls = reference if isinstance(reference, type) else type(reference)
    getter = getattr(ref_cls, "_get_compatibles", None)
    listed = getter() if callable(getter) else ()
    compatible = sorted({cls.__name__ for cls in listed if isinstance(cls, type)} | {ref_cls.__name__})
    cls = getattr(diffusers, name, None) if isinstance(name, str) and name.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin) and cls is not SchedulerMixin):
        raise _scheduler_error(name, compatible)
    if compatible_with is not None and cls.__name__ not in compatible:
        raise _scheduler_error(name, compatible)
    return cls


def make_scheduler(name: str, pipeline: Any):
    """The scheduler ``name`` built ``from_config`` of ``pipeline.scheduler``'s configuration
    (``ValueError`` listing valid names when it is unknown or incompatible)."""
    return scheduler_class(name, pipeline.scheduler).from_config(pipeline.scheduler.config)


class DiffusersGenerator:
    """Generator backend ``diffusers`` (see the module docstring)."""

    name = "diffusers"

    def __init__(
        self,
        config: DiffusersConfig,
        image_size: int = 512,
        image_format: str = "jpeg",
        jpeg_quality: int = 85,
        inference_time_s: float = 2.0,
    ):
        if not isinstance(config, DiffusersConfig):
            raise TypeError(f"config must be a DiffusersConfig, got {type(config).__name__}")
        if not _is_int(image_size) or image_size < SD_SIZE_MULTIPLE or image_size % SD_SIZE_MULTIPLE:
            raise ValueError(
                f"generator.image_size must be a positive multiple of {SD_SIZE_MULTIPLE} for Stable Diffusion "
                f"(its VAE works on {SD_SIZE_MULTIPLE}x smaller latents), got {image_size!r}"
            )
        image_format, jpeg_quality, t = validate_output_settings(image_format, jpeg_quality, inference_time_s)
        self.config = config
        self.image_size = int(image_size)
        self.image_format = image_format.lower()
        self.jpeg_quality = int(jpeg_quality)
        self.inference_time_s = t
        self.device = resolve_device(config.device, _SETTING)

        import torch  # noqa: F401  (heavy: only now)

        from sim.models.hub import silence_torchvision_fallback_notice

        silence_torchvision_fallback_notice()  # diffusers' pipeline imports trigger it
        from diffusers import StableDiffusionPipeline

        self.dtype = resolve_dtype(config.dtype, self.device)
        if config.scheduler is not None:
            scheduler_class(config.scheduler)  # an unknown name fails before the (slow) load

        def load(source: str, local_files_only: bool):
            with warnings.catch_warnings():
                # newer diffusers renamed torch_dtype to dtype; torch_dtype works in old and new ones
                warnings.filterwarnings("ignore", message=".*torch_dtype.* is deprecated", category=FutureWarning)
                return StableDiffusionPipeline.from_pretrained(
                    source, local_files_only=local_files_only, torch_dtype=self.dtype
                )

        pipe = load_pretrained("Stable Diffusion pipeline", config.model, config.local_files_only, _SETTING, load)
        if config.scheduler is not None:
            pipe.scheduler = make_scheduler(config.scheduler, pipe)
        multiple = int(getattr(pipe, "vae_scale_factor", SD_SIZE_MULTIPLE))
        if self.image_size % multiple:
            raise ValueError(
                f"generator.image_size must be a multiple of {multiple} for {config.model!r}, got {self.image_size}"
            )
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        flags = getattr(pipe.tokenizer, "deprecation_warnings", None)
        if isinstance(flags, dict):  # the pipeline truncates long prompts itself; we warn once (below)
            flags["sequence-length-is-longer-than-the-specified-maximum"] = True
        self.pipeline = pipe
        self._warned_truncation = False
        pipeline_logger = logging.getLogger(type(pipe).__module__)
        if _TRUNCATION not in pipeline_logger.filters:
            pipeline_logger.addFilter(_TRUNCATION)

    # --- generation ------------------------------------------------------------------------

    def _synchronize(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def _run(self, prompt: str, negative_prompt: str, seeds: list[int]) -> tuple[np.ndarray, float]:
        """The pipeline's images (N x H x W x 3 uint8) for ``seeds`` in one batch, and the wall time."""
        import torch

        n = len(seeds)
        generators = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
        negative = [negative_prompt] * n if negative_prompt else None
        self._synchronize()
        start = time.perf_counter()
        out = self.pipeline(
            prompt=[prompt] * n,
            negative_prompt=negative,
            height=self.image_size,
            width=self.image_size,
            num_inference_steps=self.config.steps,
            guidance_scale=self.config.guidance_scale,
            num_images_per_prompt=1,
            generator=generators,
            output_type="np",
        )
        self._synchronize()
        elapsed = time.perf_counter() - start
        images = np.asarray(out.images, dtype=np.float32)
        if images.shape != (n, self.image_size, self.image_size, 3):  # pragma: no cover - pipeline contract
            raise RuntimeError(f"pipeline returned images of shape {images.shape}, expected {(n, self.image_size, self.image_size, 3)}")
        # diffusers' own float -> uint8 conversion (numpy_to_pil): round(x * 255).
        pixels = np.clip(np.round(np.nan_to_num(images) * 255.0), 0, 255).astype(np.uint8)
        return pixels, elapsed

    def generate(self, request: GenerationRequest) -> list[GeneratedImage]:
        """One image per seed of ``request``, in seed order, from one batched pipeline call."""
        prompt = request.prompt if isinstance(request.prompt, str) and request.prompt.strip() else request.raw_prompt
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"request.prompt must be a non-empty string, got {request.prompt!r}")
        seeds = list(request.seeds)
        for seed in seeds:
            if not _is_int(seed) or seed < 0:
                raise ValueError(f"seeds must be non-negative integers, got {seed!r}")
        if not seeds:
            return []
        seeds = [int(s) for s in seeds]
        negative = request.negative_prompt if self.config.use_negative_prompt else ""
        negative = negative if isinstance(negative, str) and negative.strip() else ""

        hits = _TRUNCATION.hits
        batch, elapsed = self._run(prompt, negative, seeds)
        if _TRUNCATION.hits > hits and not self._warned_truncation:
            self._warned_truncation = True
            warnings.warn(
                "prompts longer than CLIP's 77 tokens are truncated by Stable Diffusion's text encoder "
                "(shown once per generator)",
                RuntimeWarning,
                stacklevel=2,
            )
        measured = self.config.time_source == "measured"
        per_image = elapsed / len(seeds) if measured else self.inference_time_s
        images: list[GeneratedImage] = []
        for seed, pixels in zip(seeds, batch):
            data = encode_image(pixels, self.image_format, self.jpeg_quality)
            delivered, why = decode_image_checked(data, self.image_format, pixels.shape)
            if delivered is None:  # pragma: no cover - a fresh encoding always decodes
                raise RuntimeError(f"freshly encoded {self.image_format} image does not decode: {why}")
            delivered.flags.writeable = False
            images.append(
                GeneratedImage(
                    data=data,
                    format=self.image_format,
                    pixels=delivered,
                    seed=seed,
                    generation_time_s=float(per_image),
                    generation_score=None,
                    time_source=self.config.time_source,
                    model=self.config.model,
                )
            )
        return images


__all__ = ["DiffusersGenerator", "SD_SIZE_MULTIPLE", "make_scheduler", "scheduler_class", "resolve_device", "resolve_dtype"]
