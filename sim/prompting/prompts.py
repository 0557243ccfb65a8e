"""The prompt set shipped with the simulator (``sim/data/prompts.yaml``).

Prompts follow the D3PG paper's form "A [scene], with [object]" and range from
bare ("A beach with a boat") to long prompts with several attributes and
clauses. Each carries its complexity in [0, 1] from
:func:`sim.model.quality.prompt_complexity`, which drives both the quality model and
the surrogate renderer's level of detail.

>>> prompts = load_prompts()
>>> len(prompts) >= 120
True
>>> p = next(p for p in prompts if p.text == "A garden with a fountain")
>>> (p.scene, p.object, p.category)
('garden', 'fountain', 'nature')
>>> 0.0 <= p.complexity <= 1.0
True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

#: The prompt set shipped with the project.
DEFAULT_PROMPTS_PATH = Path(__file__).resolve().parent.parent / "data" / "prompts.yaml"

_REQUIRED = ("text", "scene", "object")
_OPTIONAL = ("id", "category")


class PromptSetError(ValueError):
    """A prompt file that is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Prompt:
    """One raw prompt of the prompt set."""

    id: str
    #: The raw prompt as a user sends it.
    text: str
    #: The "[scene]" slot of the template (a substring of ``text``).
    scene: str
    #: The "[object]" slot of the template (a substring of ``text``).
    object: str
    category: str
    #: :func:`sim.model.quality.prompt_complexity` of ``text``, in [0, 1].
    complexity: float


def _fail(path: Path, where: str, message: str) -> PromptSetError:
    return PromptSetError(f"{path}: {where}: {message}")


def _check_entry(path: Path, index: int, entry: Any) -> dict[str, str]:
    where = f"prompt #{index}"
    if not isinstance(entry, dict):
        raise _fail(path, where, f"expected a mapping with keys {', '.join(_REQUIRED)}, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _fail(
            path, where, f"unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(_REQUIRED + _OPTIONAL)}"
        )
    out: dict[str, str] = {}
    for key in _REQUIRED + _OPTIONAL:
        if key not in entry:
            if key in _REQUIRED:
                raise _fail(path, where, f"missing required key {key!r}")
            continue
        value = entry[key]
        if not isinstance(value, str) or not value.strip():
            raise _fail(path, where, f"{key!r} must be a non-empty string, got {value!r}")
        out[key] = " ".join(value.split())
    if "id" in out:
        where = f"prompt #{index} ({out['id']})"
    lower = out["text"].lower()
    for slot in ("scene", "object"):
        if out[slot].lower() not in lower:
            raise _fail(path, where, f"{slot} {out[slot]!r} does not occur in the text {out['text']!r}")
    return out


def load_prompts(path: str | Path | None = None) -> list[Prompt]:
    """Load and validate a prompt set (default: the shipped ``sim/data/prompts.yaml``).

    The file is a mapping with a ``prompts`` list (a bare list is accepted too); each
    entry has ``text``, ``scene`` and ``object`` (substrings of ``text``), and optionally
    ``id`` (default ``p<index>``) and ``category`` (default ``"other"``). Ids and texts
    must be unique. Raises :class:`PromptSetError` (a ValueError) naming the file and
    entry on any problem. A file is parsed once per version (worlds are built often).
    """
    path = Path(path) if path is not None else DEFAULT_PROMPTS_PATH
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise PromptSetError(f"{path}: prompt file not found") from None
    return list(_load_prompts(str(path), str(path.resolve()), stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=16)
def _load_prompts(file: str, resolved: str, mtime_ns: int, size: int) -> tuple[Prompt, ...]:
    """The validated prompts of ``file`` (the other arguments key the cache)."""
    from sim.model.quality import prompt_complexity  # late import: sim.model.quality may import prompting

    path = Path(file)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PromptSetError(f"{path}: prompt file not found") from None
    except yaml.YAMLError as exc:
        raise PromptSetError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - {"prompts"})
        if unknown:
            raise PromptSetError(f"{path}: unknown top-level key(s) {', '.join(map(str, unknown))}; expected 'prompts'")
        raw = raw.get("prompts")
    if not isinstance(raw, list) or not raw:
        raise PromptSetError(f"{path}: expected a non-empty list of prompts under 'prompts'")

    prompts: list[Prompt] = []
    seen_ids: dict[str, int] = {}
    seen_texts: dict[str, int] = {}
    for index, entry in enumerate(raw):
        fields = _check_entry(path, index, entry)
        pid = fields.get("id", f"p{index:03d}")
        key = fields["text"].lower()
        if pid in seen_ids:
            raise _fail(path, f"prompt #{index}", f"duplicate id {pid!r} (first used by prompt #{seen_ids[pid]})")
        if key in seen_texts:
            raise _fail(
                path,
                f"prompt #{index} ({pid})",
                f"duplicate text {fields['text']!r} (same as prompt #{seen_texts[key]})",
            )
        seen_ids[pid] = index
        seen_texts[key] = index
        prompts.append(
            Prompt(
                id=pid,
                text=fields["text"],
                scene=fields["scene"],
                object=fields["object"],
                category=fields.get("category", "other"),
                complexity=float(prompt_complexity(fields["text"])),
            )
        )
    return tuple(prompts)


@lru_cache(maxsize=1)
def _shipped_categories() -> dict[str, str]:
    return {" ".join(p.text.lower().split()): p.category for p in load_prompts()}


def prompt_category(prompt: str) -> str:
    """The category of ``prompt`` in the shipped prompt set (``other`` for a prompt not in it).

    >>> prompt_category("A dog with a colorful collar")
    'animals'
    """
    return _shipped_categories().get(" ".join(prompt.lower().split()), "other")
