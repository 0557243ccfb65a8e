"""Run one scenario replication and write its results directory."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sim.config import Scenario, scenario_to_yaml
from sim.progress import user_progress
from sim.world.report import write_run_report
from sim.io import write_json, write_parquet
from sim.world.records import UserRecord, records_frame, trace_frame
from sim.world.simulation import World, WorldResult


@dataclass(frozen=True)
class RunOutput:
    out: Path
    result: WorldResult
    wall_time_s: float


def default_run_dir(scenario: Scenario, seed: int, root: Path = Path("results")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / scenario.name / f"{stamp}-seed{seed}"


def run_scenario(scenario: Scenario, out: Path | None = None, seed: int | None = None, quiet: bool = False) -> RunOutput:
    """Run one replication; write ``scenario.yaml``, ``trace.parquet``, ``users.parquet``, ``summary.json``, ``report.md``."""
    seed = scenario.seed if seed is None else seed
    scenario = scenario.model_copy(update={"seed": seed})
    world = World(scenario, seed=seed)  # builds agents and backends: bad input fails before anything is written
    out = Path(out) if out is not None else default_run_dir(scenario, seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.yaml").write_text(scenario_to_yaml(scenario), encoding="utf-8")
    started = time.perf_counter()
    with user_progress(scenario.arrivals.n_users, f"{scenario.name} seed {seed}", quiet) as on_user_done:
        world.on_user_done = on_user_done
        result = world.run()
    wall = time.perf_counter() - started
    trace = trace_frame(result.images, result.rounds)
    users = records_frame(result.users, UserRecord)
    write_parquet(out / "trace.parquet", trace)
    write_parquet(out / "users.parquet", users)
    write_json(out / "summary.json", result.summary)
    write_json(out / "run_info.json", {"scenario": scenario.name, "seed": seed, "wall_time_s": wall,
                                        "provisioning_agent": scenario.provisioning_agent.name,
                                        "prompt_agent": scenario.prompt_agent.name})
    write_run_report(out, scenario.name, seed, result.summary, trace, users)
    return RunOutput(out, result, wall)
