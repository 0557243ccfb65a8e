"""``python -m sim paper [all|provisioning|prompting] [--quick]``: run reproductions, write the report."""

from __future__ import annotations

from pathlib import Path

from sim.paper import prompting, provisioning
from sim.paper.report import write_report


def run_paper(out: Path, part: str = "all", quick: bool = False, jobs: int | None = None) -> Path:
    """Run the requested reproductions into ``out/<part>`` and (re)write ``out/README.md``."""
    out = Path(out)
    if part in ("all", "prompting"):
        prompting.reproduce(out / "prompting", quick=quick, jobs=jobs)
    if part in ("all", "provisioning"):
        provisioning.reproduce(out / "provisioning", quick=quick, jobs=jobs)
    flag = " --quick" if quick else ""
    target = f" --out {out}" if out != Path("results") / ("paper-quick" if quick else "paper") else ""
    commands = [f"python -m sim paper{flag}{target}   # both parts, then this report",
                f"python -m sim paper provisioning{flag}{target}   # Figs. 14-15 only",
                f"python -m sim paper prompting{flag}{target}   # Figs. 11-13 only"]
    return write_report(out, commands)
