"""Where a model comes from (local directory or hub id) and one-line errors when it cannot load.

Shared by the ``diffusers`` generator and the ``clip`` assessor; imports nothing heavy.

>>> resolve_model_source("stabilityai/stable-diffusion-2-base", local_files_only=False)
('stabilityai/stable-diffusion-2-base', False, False)
>>> resolve_model_source("/no/such/dir", local_files_only=False)
Traceback (most recent call last):
...
FileNotFoundError: model directory /no/such/dir does not exist
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

#: A Hugging Face hub id: ``name`` or ``owner/name`` (letters, digits, ``-_.``).
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


class ModelLoadError(RuntimeError):
    """A model (diffusers pipeline, CLIP) could not be loaded; the message is one line saying
    which model, why, and what to do. Raised ``from None``: the cause is in the message."""


def looks_like_path(model: str) -> bool:
    """Whether ``model`` is meant as a filesystem path rather than a hub id."""
    return (
        model.startswith(("/", ".", "~"))
        or os.sep in model.replace("/", "")
        or (os.altsep is not None and os.altsep != "/" and os.altsep in model)
        or not _HUB_ID.match(model)
    )


def resolve_model_source(model: str, local_files_only: bool) -> tuple[str, bool, bool]:
    """``(what to pass to from_pretrained, local_files_only, is_local_dir)`` for ``model``.

    An existing directory always loads with ``local_files_only=True`` (nothing is
    fetched for a local model). Something that is clearly a path but does not exist
    raises :class:`FileNotFoundError` (rather than being sent to the hub as an id).
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a hub id or a local directory, got {model!r}")
    model = model.strip()
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path), True, True
    if path.exists():
        raise NotADirectoryError(f"model path {model} is a file; expected a directory saved with save_pretrained")
    if looks_like_path(model):
        raise FileNotFoundError(f"model directory {model} does not exist")
    return model, bool(local_files_only), False


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The first meaningful line of an exception's message (type name if it is empty)."""
    text = str(exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def load_failure(what: str, model: str, exc: BaseException, local_files_only: bool, is_local: bool, setting: str) -> str:
    """One message saying which model failed to load, why (one line) and what to do."""
    why = one_line(exc)
    if is_local:
        todo = f"check that {model} is a complete directory written by save_pretrained for a {what}"
    elif local_files_only:
        todo = (
            f"it is not in the local Hugging Face cache; download it first (e.g. `hf download {model}`) "
            f"or point {setting}.model at a local directory"
        )
    else:
        todo = (
            f"the model hub may be unreachable; download the model first (e.g. `hf download {model}`) "
            f"and set {setting}.model to its local directory (or {setting}.local_files_only: true to use the cache)"
        )
    return f"could not load {what} {model!r}: {why}; {todo}"


def load_pretrained(what: str, model: str, local_files_only: bool, setting: str, loader: Callable[[str, bool], T]) -> T:
    """``loader(source, local_files_only)`` for ``model`` (see :func:`resolve_model_source`), with
    every failure turned into one :class:`ModelLoadError` line naming the model and what to do.

    ``what`` names the kind of model (``"Stable Diffusion pipeline"``), ``setting`` the scenario
    key holding it (``"generator.diffusers"``).
    """
    try:
        source, local_only, is_local = resolve_model_source(model, local_files_only)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"could not load {what} {model!r}: {exc}; set {setting}.model to a hub id or to a directory "
            "written by save_pretrained (e.g. `python -m sim models build-tiny DIR` for tiny test models)"
        ) from None
    try:
        with quiet_loading():
            return loader(source, local_only)
    except ModelLoadError:
        raise
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear line
        raise ModelLoadError(load_failure(what, model, exc, local_only, is_local, setting)) from None


def resolve_device(device: str, setting: str = "device") -> str:
    """``"cuda"`` or ``"cpu"`` for a config ``device`` (``auto``: CUDA when torch sees one)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{setting}.device is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"{setting}.device must be auto, cpu or cuda, got {device!r}")
    return device


class _DropTorchvisionFallbackNotice(logging.Filter):
    """Drops transformers' one-time notice that an image processor falls back to its PIL
    variant because torchvision is missing: the PIL variant is the same preprocessing, and
    the notice (printed while diffusers imports its pipelines) would look like a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


_FALLBACK_FILTER = _DropTorchvisionFallbackNotice()


def silence_torchvision_fallback_notice() -> None:
    """Install :class:`_DropTorchvisionFallbackNotice` on transformers' import logger (idempotent)."""
    logger = logging.getLogger("transformers.utils.import_utils")
    if _FALLBACK_FILTER not in logger.filters:
        logger.addFilter(_FALLBACK_FILTER)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide the "Loading pipeline components" / "Loading weights" progress bars of diffusers and
    transformers while a model loads (only libraries already imported are touched); each
    library's setting is restored afterwards."""
    silence_torchvision_fallback_notice()
    restore = []
    for library in ("transformers", "diffusers"):
        if library not in sys.modules:
            continue
        hf_logging = importlib.import_module(f"{library}.utils.logging")
        if hf_logging.is_progress_bar_enabled():
            hf_logging.disable_progress_bar()
            restore.append(hf_logging)
    try:
        yield
    finally:
        for hf_logging in restore:
            hf_logging.enable_progress_bar()


__all__ = [
    "ModelLoadError",
    "load_failure",
    "load_pretrained",
    "looks_like_path",
    "one_line",
    "quiet_loading",
    "resolve_device",
    "resolve_model_source",
    "silence_torchvision_fallback_notice",
]
