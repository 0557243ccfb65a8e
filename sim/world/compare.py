"""Run several agents on the same seeds and put them side by side with confidence intervals."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from sim.backends import AgentError
from sim.config import AgentConfig, Scenario, scenario_to_yaml
from sim.executors import check_executor, run_tasks
from sim.io import write_csv
from sim.progress import count_progress
from sim.registry import PROMPT_AGENTS, PROVISIONING_AGENTS, RegistryError
from sim.world.report import write_compare_report
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
    return {"agent": arm.label, "provisioning_agent": arm.provisioning.name, "prompt_agent": arm.prompt.name,
            "seed": seed, **result.summary}


def default_compare_dir(scenario: Scenario, root: Path = Path("results")) -> Path:
    return root / scenario.name / f"compare-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


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
    """Run every arm on every seed (``executor``: local processes, Dask or Ray); write ``runs.csv`` and ``report.md``."""
    check_executor(executor, address)
    out = Path(out) if out is not None else default_compare_dir(scenario)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.yaml").write_text(scenario_to_yaml(scenario), encoding="utf-8")
    jobs = [(scenario, arm, seed) for arm in arms for seed in seeds]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    with count_progress(len(jobs), f"{scenario.name}: runs", quiet) as advance:
        rows = run_tasks(run_arm_seed, jobs, executor, workers, address, on_done=advance)
    order = {arm.label: i for i, arm in enumerate(arms)}
    runs = pd.DataFrame(rows).sort_values(["agent", "seed"], key=lambda c: c.map(order) if c.name == "agent" else c)
    runs = runs.reset_index(drop=True)
    write_csv(out / "runs.csv", runs)
    write_compare_report(out, scenario.name, runs)
    return out, runs
