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
    #: True when the assessor could not score the image (endpoint down, unparsable reply, ...);
    #: ``score`` is then the configured fallback's score (see ``assessor``), never an invented number.
    failed: bool = False
    #: Name of the assessor whose score this is (differs from the configured one after a fallback).
    assessor: str = ""


class Assessor(Protocol):
    name: str

    def assess(self, sent: GeneratedImage, received: bytes, prompt: str, user_id: int | None = None) -> Assessment:
        """Score ``received`` (the bytes after the channel) of the image ``sent`` for ``prompt``.

        ``user_id`` lets assessors that keep per-user memory (the LLM assessor) tell users apart.
        """
        ...
