"""Atomic file writes: a crash or an interrupt never leaves half a file where a whole one is expected.

Every writer goes through :func:`atomic_path`: the data goes to a temporary file
beside the target (same directory, so the rename stays on one file system),
is flushed to disk, and replaces the target with ``os.replace`` (atomic on POSIX
and Windows). On an error the temporary file is removed and the target is left
as it was.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_json(d / "s.json", {"x": float("nan"), "n": 3})
>>> (d / "s.json").read_text()
'{\\n  "x": null,\\n  "n": 3\\n}\\n'
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write to; it replaces ``path`` when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name[:32]}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` and numpy scalars as Python ones (recursively)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """Write ``data`` as JSON atomically (NaN and infinities as ``null``), with a final newline."""
    write_text(path, json.dumps(json_safe(data), indent=indent, ensure_ascii=False) + "\n")


def write_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    """Write ``frame`` to Parquet atomically (no index)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_csv(path: str | Path, frame: pd.DataFrame, **kwargs: Any) -> None:
    """Write ``frame`` to CSV atomically (no index unless ``index=True``)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)


def write_with(path: str | Path, save: Callable[[Path], Any]) -> None:
    """Let ``save(tmp_path)`` write the file (e.g. ``torch.save``), then move it into place atomically."""
    with atomic_path(path) as tmp:
        save(tmp)


def unique_dir(path: Path) -> Path:
    """``path`` created new, or ``path-2``, ``path-3``, ... when it exists (two runs started in the same second)."""
    candidate, k = Path(path), 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            k += 1
            candidate = Path(f"{path}-{k}")


__all__ = ["atomic_path", "json_safe", "unique_dir", "write_bytes", "write_csv", "write_json", "write_parquet",
           "write_text", "write_with"]
