"""Run several agents on the same seeds and put them side by side with confidence intervals."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from sim.backends import AgentError
from sim.config import AgentConfig, Scenario, ScenarioError, scenario_to_yaml
from sim.executors import check_executor, run_tasks
from sim.io import unique_dir, write_csv, write_text
from sim.progress import count_progress
from sim.registry import PROMPT_AGENTS, PROVISIONING_AGENTS, RegistryError
from sim.world.records import conservation_line
from sim.world.report import profile_notes, write_compare_report
from sim.world.simulation import World


@dataclass(frozen=True)
class Arm:
    """One compared configuration: a provisioning agent and a prompt agent, each with its parameters."""

    label: str
    provisioning: AgentConfig
    prompt: AgentConfig


def make_arms(scenario: Scenario, provisioning: list[str] | None, prompt: list[str] | None) -> list[Arm]:
    """Every provisioning x prompt agent pair.

    ``provisioning`` entries are labels of the scenario's ``compare.provisioning_agents`` (which carry
    parameters) or registry names; a registry name runs with the scenario's parameters when it is the
    scenario's own agent, with its defaults otherwise. ``None``: the ``compare`` section's agents, or
    the scenario's agent when there are none.
    """
    labelled = {a.display: a for a in scenario.compare.provisioning_agents}
    if not provisioning:
        provisioning = list(labelled) or [scenario.provisioning_agent.name]
    prompt = prompt or [scenario.prompt_agent.name]

    def config(name: str, current: AgentConfig, known: dict[str, AgentConfig], registry) -> tuple[str, AgentConfig]:
        if name in known:
            agent = known[name]
            return name, AgentConfig(name=agent.name, params=agent.params)
        try:
            registry.check_name(name)
        except RegistryError as err:
            hint = f" (or a label of compare.provisioning_agents: {', '.join(known)})" if known else ""
            raise AgentError(f"{err}{hint}") from None
        return name, current if current.name == name else AgentConfig(name=name)

    prov = [config(n, scenario.provisioning_agent, labelled, PROVISIONING_AGENTS) for n in provisioning]
    prom = [config(n, scenario.prompt_agent, {}, PROMPT_AGENTS) for n in prompt]
    several_prompts = len(prom) > 1
    return [Arm(f"{p}+{q}" if several_prompts else p, pc, qc) for p, pc in prov for q, qc in prom]


def _arm_scenario(scenario: Scenario, arm: Arm) -> Scenario:
    return scenario.model_copy(update={"provisioning_agent": arm.provisioning, "prompt_agent": arm.prompt})


def run_arm_seed(scenario: Scenario, arm: Arm, seed: int) -> dict[str, Any]:
    """One replication of one arm (runs in a worker process)."""
    result = World(_arm_scenario(scenario, arm), seed=seed).run()
    if not result.conservation["holds"]:
        raise RuntimeError(f"{arm.label} seed {seed}: {conservation_line(result.conservation)}")
    return {"agent": arm.label, "provisioning_agent": arm.provisioning.name, "prompt_agent": arm.prompt.name,
            "seed": seed, **result.summary}


def run_arm_seed_to(scenario: Scenario, arm: Arm, seed: int, path: str) -> dict[str, Any]:
    """:func:`run_arm_seed`, its summary row also written to ``path`` (atomically) so that a rerun skips it."""
    row = run_arm_seed(scenario, arm, seed)
    write_text(path, json.dumps(row))  # floats round-trip exactly; NaN as NaN
    return row


def run_saved(jobs: list[tuple[Scenario, Arm, int, str]], executor: str | None, workers: int | None,
              address: str | None, quiet: bool, description: str,
              log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[dict[str, Any]]:
    """Every ``(scenario, arm, seed, path)`` job's summary row, in order: the jobs whose file exists are read
    back, the others run (:func:`run_arm_seed_to`) and saved, so an interrupted study resumes where it stopped."""
    todo = [job for job in jobs if not Path(job[3]).exists()]
    if not quiet and len(todo) < len(jobs):
        log(f"{len(jobs) - len(todo)} of {len(jobs)} runs already done: skipped")
    workers = max(1, min(workers or os.cpu_count() or 1, max(len(todo), 1)))
    with count_progress(len(todo), description, quiet) as advance:
        run_tasks(run_arm_seed_to, todo, executor, workers, address, on_done=advance)
    return [json.loads(Path(path).read_text(encoding="utf-8")) for *_, path in jobs]


def claim_results_dir(out: Path, scenario: Scenario, what: str) -> None:
    """Create ``out`` for resumable results, or check that the runs already in it are of this same scenario."""
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "scenario.yaml"
    text = scenario_to_yaml(scenario)
    if saved.exists() and saved.read_text(encoding="utf-8") != text:
        raise ScenarioError(str(out), [f"holds the {what} of another scenario (or other settings); resume it with "
                                       "the same scenario file, or choose another --out"])
    write_text(saved, text)


def default_compare_dir(scenario: Scenario, root: Path = Path("results")) -> Path:
    return unique_dir(root / scenario.name / f"compare-{datetime.now().strftime('%Y%m%d-%H%M%S')}")


def compare(
    scenario: Scenario,
    arms: list[Arm],
    seeds: list[int],
    out: Path | None = None,
    workers: int | None = None,
    quiet: bool = False,
    executor: str = "local",
    address: str | None = None,
) -> tuple[Path, pd.DataFrame]:
    """Run every arm on every seed (``executor``: local processes, Dask or Ray); write ``runs.csv`` and ``report.md``.

    Each run's summary is saved on its own (``runs/<agent>-seed<S>.json``, atomically) as it finishes, so the
    same command with the same ``out`` after an interruption runs only what is missing.
    """
    check_executor(executor, address)
    out = Path(out) if out is not None else default_compare_dir(scenario)
    claim_results_dir(out, scenario, "comparison")
    jobs = [(scenario, arm, seed, str(out / "runs" / f"{_file_label(arm.label)}-seed{seed}.json"))
            for arm in arms for seed in seeds]
    rows = run_saved(jobs, executor, workers, address, quiet, f"{scenario.name}: runs")
    order = {arm.label: i for i, arm in enumerate(arms)}
    runs = pd.DataFrame(rows).sort_values(["agent", "seed"], key=lambda c: c.map(order) if c.name == "agent" else c)
    runs = runs.reset_index(drop=True)
    write_csv(out / "runs.csv", runs)
    write_compare_report(out, scenario.name, runs, notes=profile_notes(scenario.quality.profile))
    return out, runs


def _file_label(label: str) -> str:
    """A file name for an agent label (a short hash keeps two labels that sanitise alike apart)."""
    safe = "".join(c if c.isalnum() or c in "=.-_+" else "-" for c in label)
    return safe if safe == label else f"{safe}-{hashlib.sha256(label.encode()).hexdigest()[:8]}"
