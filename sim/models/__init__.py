"""Model files the simulator can build offline (tiny test models) and helpers to load models.

:func:`build_tiny_models` writes a tiny Stable Diffusion pipeline and a tiny CLIP
model (real architectures, random weights, the real CLIP tokenizer) for tests and
smoke runs; see :mod:`sim.models.tiny`. Importing this package does not import torch.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_models(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """See :func:`sim.models.tiny.build_tiny_models` (imported lazily: torch is heavy)."""
    from sim.models.tiny import build_tiny_models as build

    return build(out_dir, seed=seed)


__all__ = ["build_tiny_models"]
