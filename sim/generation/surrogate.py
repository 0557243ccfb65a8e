"""The surrogate text-to-image backend: a calibrated quality model plus a procedural image.

No diffusion model runs. For each seed of a request the surrogate

* draws the image's generation score (0-10, the assessor's scale) from the quality
  model: ``quality_model.sample_scores(raw_prompt, strategy,
  np.random.default_rng(seed), n=1, key=prompt_effect_key)``, so the score is a
  deterministic function of (raw prompt, strategy, seed, key);
* renders a picture with :func:`sim.generation.render.render_image` from the *raw*
  prompt and the seed (its detail, hence its encoded size, grows with the raw
  prompt's complexity; the refined prompt's boilerplate suffixes would push every
  refined prompt to maximal detail and hide the prompt's own content);
* encodes it in the configured format (bytes as transmitted) and records as
  ``pixels`` the image an error-free link delivers (for JPEG, the decoded JPEG,
  decoded the first time it is read: :class:`SurrogateImage`);
* reports ``inference_time_s`` as the modelled GPU time per image.

>>> from sim.model.quality import QualityModel
>>> gen = SurrogateGenerator(QualityModel.default(), image_size=64)
>>> req = GenerationRequest(raw_prompt="A garden with a fountain", prompt="A garden with a fountain",
...                         strategy=0, seeds=(3, 1))
>>> images = gen.generate(req)
>>> [im.seed for im in images], images[0].format, images[0].pixels.shape
([3, 1], 'jpeg', (64, 64, 3))
>>> images[0].generation_score == gen.generate(req)[0].generation_score
True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sim.config import Scenario
from sim.generation.base import GeneratedImage, GenerationRequest, validate_output_settings
from sim.generation.render import decode_image, encode_image, render_image
from sim.prompting.prompts import load_prompts


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def render_encoded(
    prompt: str,
    seed: int,
    size: int = 256,
    image_format: str = "jpeg",
    jpeg_quality: int = 85,
    complexity: float | None = None,
) -> tuple[bytes, np.ndarray]:
    """The surrogate's picture for (prompt, seed): ``(bytes as transmitted, pixels as delivered
    by an error-free link)`` (read-only pixels; for JPEG the decoded JPEG, else the render)."""
    data, pixels = _render(prompt, seed, size, image_format, jpeg_quality, complexity)
    return data, _decoded(data, image_format, pixels) if isinstance(pixels, tuple) else pixels


def _render(prompt: str, seed: int, size: int, image_format: str, jpeg_quality: int,
            complexity: float | None) -> tuple[bytes, np.ndarray | tuple[int, int, int]]:
    """``(bytes as transmitted, the render read-only)``; for JPEG, lossy, the render's shape instead: what an
    error-free link delivers is the decoded JPEG (:func:`_decoded`)."""
    pixels = render_image(prompt, int(seed), size, complexity)
    data = encode_image(pixels, image_format, jpeg_quality)
    if image_format == "jpeg":
        return data, pixels.shape
    pixels.flags.writeable = False
    return data, pixels


def _decoded(data: bytes, image_format: str, shape: tuple[int, int, int]) -> np.ndarray:
    """The freshly encoded ``data`` decoded, read-only."""
    pixels = decode_image(data, image_format, shape)
    if pixels is None:  # pragma: no cover - a fresh encoding always decodes
        raise RuntimeError(f"freshly encoded {image_format} does not decode")
    pixels.flags.writeable = False
    return pixels


@dataclass(frozen=True)
class SurrogateImage(GeneratedImage):
    """A surrogate image whose ``pixels`` (for JPEG: the decoded JPEG, what an error-free link delivers) are
    decoded the first time they are read, then kept: most images cross the link intact, and an intact image is
    scored without its pixels (:class:`sim.assessment.fidelity.FidelityAssessor`). Constructed with ``pixels``
    an array (kept as is) or the ``(height, width, 3)`` shape to decode ``data`` to."""

    def _get_pixels(self) -> np.ndarray:
        value = self.__dict__["_pixels"]
        if isinstance(value, tuple):  # not decoded yet
            self.__dict__["_pixels"] = value = _decoded(self.data, self.format, value)
        return value

    def _set_pixels(self, value) -> None:  # the dataclass's __init__ (frozen: it sets fields this way)
        self.__dict__["_pixels"] = value if isinstance(value, tuple) else np.asarray(value)

    pixels = property(_get_pixels, _set_pixels)


class SurrogateGenerator:
    """Generator backend ``surrogate`` (see the module docstring)."""

    name = "surrogate"

    def __init__(
        self,
        quality_model=None,
        image_size: int = 256,
        image_format: str = "jpeg",
        jpeg_quality: int = 85,
        inference_time_s: float = 5.0,
        prompt_effect_key: int = 0,
    ):
        if quality_model is None:
            from sim.model.quality import QualityModel

            quality_model = QualityModel.default(image_format=image_format)
        if not hasattr(quality_model, "sample_scores"):
            raise TypeError(f"quality_model must provide sample_scores(...), got {type(quality_model).__name__}")
        if not _is_int(image_size) or image_size < 8:
            raise ValueError(f"image_size must be an integer >= 8 pixels, got {image_size!r}")
        image_format, jpeg_quality, t = validate_output_settings(image_format, jpeg_quality, inference_time_s)
        if not _is_int(prompt_effect_key) or prompt_effect_key < 0:
            raise ValueError(f"prompt_effect_key must be a non-negative integer, got {prompt_effect_key!r}")
        self.quality_model = quality_model
        self.image_size = int(image_size)
        self.image_format = image_format.lower()
        self.jpeg_quality = int(jpeg_quality)
        self.inference_time_s = t
        self.prompt_effect_key = int(prompt_effect_key)

    def generation_score(self, raw_prompt: str, strategy: int, seed: int) -> float:
        """The quality-model score of the image (raw_prompt, strategy, seed) would get."""
        rng = np.random.default_rng(int(seed))
        scores = self.quality_model.sample_scores(raw_prompt, strategy, rng, n=1, key=self.prompt_effect_key)
        return float(np.asarray(scores).reshape(-1)[0])

    def generate(self, request: GenerationRequest) -> list[GeneratedImage]:
        """One image per seed of ``request``, in seed order."""
        if not isinstance(request.raw_prompt, str) or not request.raw_prompt.strip():
            raise ValueError(f"request.raw_prompt must be a non-empty string, got {request.raw_prompt!r}")
        from sim.model.quality import prompt_complexity

        complexity = prompt_complexity(request.raw_prompt)
        images: list[GeneratedImage] = []
        for seed in request.seeds:
            if not _is_int(seed) or seed < 0:
                raise ValueError(f"seeds must be non-negative integers, got {seed!r}")
            score = self.generation_score(request.raw_prompt, request.strategy, int(seed))
            data, pixels = _render(request.raw_prompt, seed, self.image_size, self.image_format, self.jpeg_quality,
                                   complexity)  # a JPEG's pixels: decoded when read
            images.append(
                SurrogateImage(
                    data=data,
                    format=self.image_format,
                    pixels=pixels,
                    seed=int(seed),
                    generation_time_s=self.inference_time_s,
                    generation_score=score,
                    time_source="modelled",
                    model="surrogate",
                )
            )
        return images


#: Images rendered to measure the typical encoded image size (see :func:`typical_image_bits`).
_SIZE_SAMPLES = 16


@lru_cache(maxsize=8)
def _measure_image_bits(size: int, image_format: str, jpeg_quality: int, prompt_set: str) -> float:
    pool = load_prompts(None if prompt_set == "default" else prompt_set)
    step = max(1, len(pool) // _SIZE_SAMPLES)
    texts = [pool[(k * step) % len(pool)].text for k in range(_SIZE_SAMPLES)]
    sizes = [len(render_encoded(t, k, size, image_format, jpeg_quality)[0]) * 8 for k, t in enumerate(texts)]
    return float(np.mean(sizes))


def typical_image_bits(scenario: Scenario) -> float:
    """Mean encoded size (bits) of a surrogate image at the scenario's image settings.

    Measured once per (size, format, JPEG quality, prompt set) by rendering 16
    images of prompts spread over the prompt set with
    :func:`sim.generation.surrogate.render_encoded` (cached; ~0.1 s). The world
    uses each image's own size; the env and the oracle use this one number.
    """
    g = scenario.generator
    return _measure_image_bits(g.image_size, g.image_format, g.jpeg_quality, scenario.users.prompt_set)
