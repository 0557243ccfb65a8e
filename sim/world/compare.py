"""Run several agents on the same seeds and put them side by side with confidence intervals."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from sim.backends import AgentError
from sim.config import AgentConfig, Scenario, scenario_to_yaml
from sim.io import write_csv
from sim.progress import count_progress
from sim.registry import PROMPT_AGENTS, PROVISIONING_AGENTS, RegistryError
from sim.world.report import write_compare_report
from sim.world.simulation import World


@dataclass(frozen=True)
class Arm:
    """One compared configuration: a provisioning agent and a prompt agent."""

    label: str
    provisioning: str
    prompt: str


def make_arms(scenario: Scenario, provisioning: list[str], prompt: list[str] | None) -> list[Arm]:
    """Every provisioning x prompt agent pair; names are checked against the registries."""
    prompt = prompt or [scenario.prompt_agent.name]
    try:
        for name in provisioning:
            PROVISIONING_AGENTS.check_name(name)
        for name in prompt:
            PROMPT_AGENTS.check_name(name)
    except RegistryError as err:
        raise AgentError(str(err)) from None
    several_prompts = len(prompt) > 1
    return [
        Arm(f"{p}+{q}" if several_prompts else p, p, q)
        for p in provisioning
        for q in prompt
    ]


def _arm_scenario(scenario: Scenario, arm: Arm) -> Scenario:
    def agent(current: AgentConfig, name: str) -> AgentConfig:
        # Keep the scenario's parameters for the agent it names; others run with their defaults.
        return current if current.name == name else AgentConfig(name=name)

    return scenario.model_copy(
        update={
            "provisioning_agent": agent(scenario.provisioning_agent, arm.provisioning),
            "prompt_agent": agent(scenario.prompt_agent, arm.prompt),
        }
    )


def run_arm_seed(scenario: Scenario, arm: Arm, seed: int) -> dict[str, Any]:
    """One replication of one arm (runs in a worker process)."""
    result = World(_arm_scenario(scenario, arm), seed=seed).run()
    return {"agent": arm.label, "provisioning_agent": arm.provisioning, "prompt_agent": arm.prompt, "seed": seed,
            **result.summary}


def default_compare_dir(scenario: Scenario, root: Path = Path("results")) -> Path:
    return root / scenario.name / f"compare-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def compare(
    scenario: Scenario,
    arms: list[Arm],
    seeds: list[int],
    out: Path | None = None,
    workers: int | None = None,
    quiet: bool = False,
) -> tuple[Path, pd.DataFrame]:
    """Run every arm on every seed (in parallel processes); write ``runs.csv`` and ``report.md``."""
    out = Path(out) if out is not None else default_compare_dir(scenario)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.yaml").write_text(scenario_to_yaml(scenario), encoding="utf-8")
    jobs = [(arm, seed) for arm in arms for seed in seeds]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    rows = []
    with count_progress(len(jobs), f"{scenario.name}: runs", quiet) as advance:
        if workers == 1:
            for arm, seed in jobs:
                rows.append(run_arm_seed(scenario, arm, seed))
                advance()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(run_arm_seed, scenario, arm, seed) for arm, seed in jobs]
                for future in as_completed(futures):
                    rows.append(future.result())
                    advance()
    order = {arm.label: i for i, arm in enumerate(arms)}
    runs = pd.DataFrame(rows).sort_values(["agent", "seed"], key=lambda c: c.map(order) if c.name == "agent" else c)
    runs = runs.reset_index(drop=True)
    write_csv(out / "runs.csv", runs)
    write_compare_report(out, scenario.name, runs)
    return out, runs
