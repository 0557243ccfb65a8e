"""``python -m sim paper [all|provisioning|provisioning-epoch|provisioning-world|multimodality|prompting] [--quick]``: run reproductions, write the report."""

from __future__ import annotations

from pathlib import Path

from sim.executors import using
from sim.paper import multimodality, prompting, provisioning, provisioning_world
from sim.paper.report import write_report

PARTS = ("all", "provisioning", "provisioning-epoch", "provisioning-world", "multimodality", "prompting")


def run_paper(out: Path, part: str = "all", quick: bool = False, jobs: int | None = None, executor: str = "local",
              address: str | None = None, quality_profile: str | None = None) -> Path:
    """Run the requested reproductions into ``out/<part>`` and (re)write ``out/README.md``.

    ``provisioning`` runs both settings: the paper's one-epoch problem (``out/provisioning``, Figs. 14-15)
    and the sequential world (``out/provisioning_world``); each also runs alone. Training and evaluation
    runs go to ``executor`` (:mod:`sim.executors`: local processes, Dask or Ray) with ``jobs`` workers.
    ``quality_profile`` replaces the prompting part's ``quality.profile`` (e.g. ``paper``); its results go to
    ``out/prompting-<profile>`` (:func:`sim.paper.prompting.part_directory`), beside the scenario's own.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    with using(executor, address):
        return _run_parts(Path(out), part, quick, jobs, quality_profile)


def _run_parts(out: Path, part: str, quick: bool, jobs: int | None, quality_profile: str | None = None) -> Path:
    if part in ("all", "prompting"):
        prompting.reproduce(out / prompting.part_directory(quality_profile), quick=quick, jobs=jobs,
                            quality_profile=quality_profile)
    if part in ("all", "provisioning", "provisioning-epoch"):
        provisioning.reproduce(out / "provisioning", quick=quick, jobs=jobs)
    if part in ("all", "provisioning", "provisioning-world"):
        provisioning_world.reproduce(out / "provisioning_world", quick=quick, jobs=jobs)
    if part in ("all", "multimodality"):
        multimodality.reproduce(out / "multimodality", quick=quick, jobs=jobs)
    flag = " --quick" if quick else ""
    target = f" --out {out}" if out != Path("results") / ("paper-quick" if quick else "paper") else ""
    commands = [f"python -m sim paper{flag}{target}   # every part, then this report",
                f"python -m sim paper provisioning{flag}{target}   # both provisioning settings",
                f"python -m sim paper provisioning-epoch{flag}{target}   # Figs. 14-15 only (the paper's one-epoch problem)",
                f"python -m sim paper provisioning-world{flag}{target}   # the sequential world only",
                f"python -m sim paper multimodality{flag}{target}   # where a diffusion actor should matter",
                f"python -m sim paper prompting{flag}{target}   # Figs. 11-13 only (the scenario's ratings profile)",
                *(f"python -m sim paper prompting{flag}{target} --quality-profile {p}   # Figs. 11-13 under the {p} "
                  f"profile (into prompting-{p}/)" for p in prompting.OTHER_PROFILES)]
    return write_report(out, commands)
