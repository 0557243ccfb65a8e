"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """The tiny Stable Diffusion pipeline and CLIP model (``sim.models.build_tiny_models``), built once per session."""
    for package in ("torch", "diffusers", "transformers"):
        pytest.importorskip(package)
    from sim.models import build_tiny_models
    from sim.models.clip_vocab import find_clip_bpe

    try:
        find_clip_bpe()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"), seed=0)
