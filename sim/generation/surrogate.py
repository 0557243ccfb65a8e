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
  decoded the first time it is read: :class:`Picture`);
* with ``pictures_per_prompt`` K, draws the picture of seed s from (raw prompt, s mod K)
  instead, each of a prompt's K pictures rendered once per process and kept
  (:meth:`SurrogateGenerator.picture`): a load test's images then cost a channel and an
  assessment each, not a render and an encode;
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

from collections import OrderedDict
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
    picture = _render(prompt, seed, size, image_format, jpeg_quality, complexity)
    return picture.data, picture.pixels


class Picture:
    """One rendered picture: its bytes as transmitted (``data``) and ``pixels``, what an error-free link
    delivers (read-only; for JPEG, lossy, the decoded JPEG, decoded the first time they are read and then kept:
    most images cross the link intact, and an intact image is scored without its pixels)."""

    __slots__ = ("data", "format", "_pixels")

    def __init__(self, data: bytes, image_format: str, pixels: np.ndarray | tuple[int, int, int]):
        self.data = data
        self.format = image_format
        #: the pixels, or the ``(height, width, 3)`` shape to decode ``data`` to when they are first read
        self._pixels = pixels

    @property
    def pixels(self) -> np.ndarray:
        if isinstance(self._pixels, tuple):
            pixels = decode_image(self.data, self.format, self._pixels)
            if pixels is None:  # pragma: no cover - a fresh encoding always decodes
                raise RuntimeError(f"freshly encoded {self.format} does not decode")
            pixels.flags.writeable = False
            self._pixels = pixels
        return self._pixels


def _render(prompt: str, seed: int, size: int, image_format: str, jpeg_quality: int,
            complexity: float | None) -> Picture:
    """The picture of (prompt, seed), rendered and encoded (:class:`Picture`)."""
    pixels = render_image(prompt, int(seed), size, complexity)
    data = encode_image(pixels, image_format, jpeg_quality)
    if image_format == "jpeg":
        return Picture(data, image_format, pixels.shape)
    pixels.flags.writeable = False
    return Picture(data, image_format, pixels)


@dataclass(frozen=True)
class SurrogateImage(GeneratedImage):
    """A surrogate image whose ``pixels`` are those of its :class:`Picture` (for JPEG: decoded the first time
    they are read, then kept, and shared by every image of the same picture). Constructed with ``pixels`` a
    :class:`Picture` or an array (kept as is)."""

    def _get_pixels(self) -> np.ndarray:
        value = self.__dict__["_pixels"]
        return value.pixels if isinstance(value, Picture) else value

    def _set_pixels(self, value) -> None:  # the dataclass's __init__ (frozen: it sets fields this way)
        self.__dict__["_pixels"] = value if isinstance(value, Picture) else np.asarray(value)

    pixels = property(_get_pixels, _set_pixels)


#: Memory the rendered pictures a surrogate keeps (``pictures_per_prompt``) may hold, in decoded pixels.
PICTURE_CACHE_BYTES = 256 * 2**20


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
        pictures_per_prompt: int | None = None,
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
        if pictures_per_prompt is not None and (not _is_int(pictures_per_prompt) or pictures_per_prompt < 1):
            raise ValueError(f"pictures_per_prompt must be an integer >= 1 or None, got {pictures_per_prompt!r}")
        self.quality_model = quality_model
        self.image_size = int(image_size)
        self.image_format = image_format.lower()
        self.jpeg_quality = int(jpeg_quality)
        self.inference_time_s = t
        self.prompt_effect_key = int(prompt_effect_key)
        #: Distinct pictures per raw prompt (None: one per seed); see :meth:`picture`.
        self.pictures_per_prompt = None if pictures_per_prompt is None else int(pictures_per_prompt)
        self._pictures: OrderedDict[tuple[str, int], Picture] = OrderedDict()
        self._max_pictures = max(16, PICTURE_CACHE_BYTES // (3 * self.image_size**2))

    def generation_score(self, raw_prompt: str, strategy: int, seed: int) -> float:
        """The quality-model score of the image (raw_prompt, strategy, seed) would get."""
        rng = np.random.default_rng(int(seed))
        scores = self.quality_model.sample_scores(raw_prompt, strategy, rng, n=1, key=self.prompt_effect_key)
        return float(np.asarray(scores).reshape(-1)[0])

    def picture(self, raw_prompt: str, seed: int, complexity: float | None = None) -> Picture:
        """The picture of an image of ``raw_prompt`` drawn with ``seed``: rendered from (raw prompt, seed), or with
        ``pictures_per_prompt`` K from (raw prompt, seed mod K), each of those K rendered once and kept (the
        most recently used, up to :data:`PICTURE_CACHE_BYTES` of pixels). The image's generation score is drawn
        from its own seed either way; K pictures per prompt only make images of one prompt share their bytes
        (their size, hence the bits the channel can hit) and their look (what a damaged image is compared with)."""
        if self.pictures_per_prompt is None:
            return _render(raw_prompt, seed, self.image_size, self.image_format, self.jpeg_quality, complexity)
        key = (raw_prompt, seed % self.pictures_per_prompt)
        picture = self._pictures.get(key)
        if picture is None:
            picture = _render(raw_prompt, key[1], self.image_size, self.image_format, self.jpeg_quality, complexity)
            self._pictures[key] = picture
            if len(self._pictures) > self._max_pictures:
                self._pictures.popitem(last=False)
        else:
            self._pictures.move_to_end(key)
        return picture

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
            picture = self.picture(request.raw_prompt, int(seed), complexity)
            images.append(
                SurrogateImage(
                    data=picture.data,
                    format=self.image_format,
                    pixels=picture,
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
