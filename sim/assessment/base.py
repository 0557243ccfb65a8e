"""The assessor seam: the image as the user received it + the prompt -> a 0-10 score.

Backends (``fidelity`` here; ``llm`` and ``clip`` plug in the same way)
implement :class:`Assessor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sim.generation.base import GeneratedImage


@dataclass(frozen=True)
class Assessment:
    """A user's (or its stand-in's) verdict on one received image."""

    #: Score on the 0-10 scale; 0 for an image that no longer decodes.
    score: float
    #: False when the received bytes no longer decode as an image.
    decodable: bool
    #: Structural damage between sent and received image (1 - SSIM), NaN if undecodable.
    damage: float
    #: Short free text (e.g. a reason, or why decoding failed).
    detail: str = ""


class Assessor(Protocol):
    name: str

    def assess(self, sent: GeneratedImage, received: bytes, prompt: str) -> Assessment:
        """Score ``received`` (the bytes after the channel) of the image ``sent`` for ``prompt``."""
        ...
