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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread (thread synchronisation dwarfs their kernels, and on a
    shared machine it is far worse); the setting is restored after the module."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def load_script():
    """``load_script(name)``: ``scripts/<name>.py`` as a module (the scripts are not a package), loaded once."""
    import importlib.util
    from pathlib import Path

    loaded = {}

    def load(name: str):
        if name not in loaded:
            path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
            spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            loaded[name] = module
        return loaded[name]

    return load
