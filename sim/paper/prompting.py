"""Reproduction of the D3PG paper's Figs. 11-13 (prompt engineering): not built yet."""

from __future__ import annotations

from pathlib import Path


def reproduce(out: Path, quick: bool = False, jobs: int | None = None) -> dict:
    raise NotImplementedError("the prompt-engineering reproduction (Figs. 11-13) is not built yet")


def claims(out: Path) -> list[dict[str, str]]:
    return []


def section(out: Path, rel: str = "prompting") -> str:
    return ""
