"""The generator seam: prompt + seeds -> images (bytes as sent, pixels, time).

Backends (``surrogate`` here; ``diffusers`` and ``cache`` plug in the same way)
implement :class:`Generator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class GenerationRequest:
    """What the MASP asks a generator for: one prompt, one strategy, one image per seed."""

    raw_prompt: str
    #: The prompt after prompt engineering (what a real model would see).
    prompt: str
    strategy: int
    seeds: tuple[int, ...]
    negative_prompt: str = ""


@dataclass(frozen=True)
class GeneratedImage:
    """One generated image as it leaves the MASP."""

    #: Encoded bytes as transmitted (PNG, JPEG or raw RGB).
    data: bytes
    #: ``"png"``, ``"jpeg"`` or ``"raw"``.
    format: str
    #: Height x width x 3 uint8 pixels of the image as sent.
    pixels: np.ndarray = field(repr=False)
    seed: int
    #: Seconds of GPU time the generator spent (measured or modelled).
    generation_time_s: float
    #: Quality on the assessor's 0-10 scale when the backend knows it
    #: (the surrogate draws it from the quality model, a cache may have it recorded); ``None`` for real models.
    generation_score: float | None = None
    #: Which time drives the GPU queue: ``"modelled"`` (the scenario's fixed time per image)
    #: or ``"measured"`` (wall-clock time the backend spent).
    time_source: str = "modelled"
    #: The backend's model (id or path), for the trace; ``"surrogate"`` for the surrogate.
    model: str = ""

    @property
    def n_bits(self) -> int:
        return 8 * len(self.data)


class Generator(Protocol):
    """A text-to-image backend."""

    name: str

    def generate(self, request: GenerationRequest) -> list[GeneratedImage]:
        """One image per seed in ``request.seeds``, in that order."""
        ...


def validate_output_settings(image_format: object, jpeg_quality: object, inference_time_s: object) -> tuple[str, int, float]:
    """Check the settings every generator shares; returns them normalised ``(format, quality, seconds)``."""
    from sim.generation.render import FORMATS

    if not isinstance(image_format, str) or image_format.lower() not in FORMATS:
        raise ValueError(f"image_format must be one of {', '.join(FORMATS)}, got {image_format!r}")
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, (int, np.integer)) or not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be an integer in 1..100, got {jpeg_quality!r}")
    try:
        seconds = float(inference_time_s)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = float("nan")
    if not (np.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"inference_time_s must be a finite number >= 0, got {inference_time_s!r}")
    return image_format.lower(), int(jpeg_quality), seconds
