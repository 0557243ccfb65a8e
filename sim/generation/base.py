"""The generator seam: prompt + seeds -> images (bytes as sent, pixels, time).

Backends (``surrogate`` here; ``diffusers`` and ``cache`` plug in the same way)
implement :class:`Generator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

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

