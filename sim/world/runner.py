"""Run one scenario replication and write its results directory."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from sim.config import Scenario, ScenarioError, scenario_to_yaml
from sim.progress import user_progress
from sim.world.report import profile_notes, write_run_report
from sim.io import unique_dir, write_json, write_parquet, write_text
from sim.world.records import UserRecord, conservation_line, records_frame, trace_frame
from sim.world.simulation import World, WorldResult
from sim.world.streaming import streamed

#: Runs of at least this many users stream their records to Parquet unless told otherwise: records held in
#: memory cost about 40 KB per user (10,000 statistical users of poisson_100k: 904 MiB peak held, 540 MiB
#: streamed, and twice as long to write; ``python scripts/bench_world.py scenarios/poisson_100k.yaml --users
#: 10000 --[no-]stream``).
STREAM_FROM_USERS = 10_000
#: Image rows of a streamed trace that its report's plots show (the first ones written).
REPORT_SAMPLE_ROWS = 20_000


@dataclass(frozen=True)
class RunOutput:
    out: Path
    result: WorldResult
    wall_time_s: float


#: Share of failed assessments from which a run carries a warning (all failed: ``run`` also exits with status 3).
FAILED_ASSESSMENTS_WARNING = 0.5


def default_run_dir(scenario: Scenario, seed: int, root: Path = Path("results")) -> Path:
    """A new directory ``results/<scenario>/<time>-seed<N>`` (``-2``, ``-3``, ... when started in the same second)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return unique_dir(root / scenario.name / f"{stamp}-seed{seed}")


def all_assessments_failed(result: WorldResult) -> bool:
    """Every image of the run was generated but none was scored by the configured assessor."""
    return bool(result.images_generated) and result.summary["assessment_failures"] == result.images_generated


def assessment_warnings(result: WorldResult) -> list[str]:
    """A warning when most (or all) of the run's assessments failed, or when its books do not balance."""
    books = result.conservation
    if books is not None and not books["holds"]:
        return [conservation_line(books) + ": users or images went missing (a bug: please report it with the "
                "scenario)"] + _assessment_warnings(result)
    return _assessment_warnings(result)


def _assessment_warnings(result: WorldResult) -> list[str]:
    images = result.images_generated
    failed = result.summary["assessment_failures"]
    if images and failed >= FAILED_ASSESSMENTS_WARNING * images:
        share = f"every assessment ({images})" if all_assessments_failed(result) else f"{failed} of {images} assessments"
        return [f"{share} failed: the scores are the fallback's (or 0), not the assessor's; see the trace's "
                "assessment_failed column and the assessor's endpoint"]
    return []


def run_scenario(scenario: Scenario, out: Path | None = None, seed: int | None = None, quiet: bool = False,
                 stream: bool | None = None, shards: int = 1, overwrite: bool = False) -> RunOutput:
    """Run one replication; write ``scenario.yaml``, ``trace.parquet``, ``users.parquet``, ``summary.json``, ``report.md``.

    ``stream`` writes the records to Parquet in chunks as they happen (:class:`~sim.world.streaming.ParquetSink`)
    instead of keeping them, so memory stays bounded whatever the number of users; the result then holds the
    summary only, the trace is sorted by time within each chunk and the users in order of departure. Default:
    streamed from :data:`STREAM_FROM_USERS` users. ``shards`` > 1 runs the MASPs in that many processes
    (:func:`sim.world.sharding.run_sharded`: the same records and summary, nearest association and agents
    that decide per observation only). An ``out`` that holds a run is refused unless ``overwrite``; a run that
    fails leaves ``FAILED.json`` (the error) in its directory.
    """
    seed = scenario.seed if seed is None else seed
    scenario = scenario.model_copy(update={"seed": seed})
    stream = scenario.arrivals.n_users >= STREAM_FROM_USERS if stream is None else bool(stream)
    if shards > 1:
        from sim.world.sharding import sharding_problems

        problems = sharding_problems(scenario, shards)  # builds agents and backends too
        if problems:
            raise ScenarioError("--shards", problems)
        world = None
    else:
        world = World(scenario, seed=seed)  # builds agents and backends: bad input fails before anything is written
    if out is None:
        out = default_run_dir(scenario, seed)
    else:
        out = Path(out)
        finished = [name for name in ("summary.json", "trace.parquet", "FAILED.json") if (out / name).exists()]
        if finished and not overwrite:
            raise ScenarioError(str(out), [f"already holds a run ({', '.join(finished)}); choose another --out or "
                                           "pass --overwrite"])
        out.mkdir(parents=True, exist_ok=True)
        for name in finished:
            (out / name).unlink()
    write_text(out / "scenario.yaml", scenario_to_yaml(scenario))
    log_handler = logging.FileHandler(out / "run.log", encoding="utf-8")  # warnings (e.g. endpoint failures)
    log_handler.setLevel(logging.WARNING)
    log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    sim_log = logging.getLogger("sim")
    sim_log.addHandler(log_handler)
    stderr_handler = None
    if not logging.getLogger().handlers:  # nobody configured logging: warnings still reach stderr too
        stderr_handler = logging.StreamHandler()
        stderr_handler.setLevel(logging.WARNING)
        sim_log.addHandler(stderr_handler)
    try:
        return _run(scenario, seed, world, out, quiet, stream, shards)
    except BaseException as err:  # the directory says the run failed, and why
        write_json(out / "FAILED.json", {"scenario": scenario.name, "seed": seed, "error": type(err).__name__,
                                         "message": " ".join(str(err).split())[:500]})
        raise
    finally:
        sim_log.removeHandler(log_handler)
        log_handler.close()
        if stderr_handler is not None:
            sim_log.removeHandler(stderr_handler)


def _run(scenario: Scenario, seed: int, world: World | None, out: Path, quiet: bool, stream: bool,
         shards: int) -> RunOutput:
    started = time.perf_counter()
    if world is None:
        from sim.world.sharding import run_sharded

        with user_progress(scenario.arrivals.n_users, f"{scenario.name} seed {seed} ({shards} shards)",
                           quiet) as on_user_done:
            result = run_sharded(scenario, seed, shards, stream_to=out if stream else None,
                                 on_user_done=on_user_done)
        return _write_outputs(out, scenario, seed, result, time.perf_counter() - started, stream, shards)
    with streamed(world, out if stream else None), \
            user_progress(scenario.arrivals.n_users, f"{scenario.name} seed {seed}", quiet) as on_user_done:
        world.on_user_done = on_user_done
        result = world.run()
    return _write_outputs(out, scenario, seed, result, time.perf_counter() - started, stream, shards)


def _write_outputs(out: Path, scenario: Scenario, seed: int, result: WorldResult, wall: float, streamed: bool,
                   shards: int) -> RunOutput:
    if not streamed:
        trace = trace_frame(result.images, result.rounds, result.faults)
        users = records_frame(result.users, UserRecord)
        write_parquet(out / "trace.parquet", trace)
        write_parquet(out / "users.parquet", users)
    else:
        trace, users = _streamed_report_tables(out)
    write_json(out / "summary.json", {**result.summary, "conservation": result.conservation})
    warnings = assessment_warnings(result)
    write_json(out / "run_info.json", {"scenario": scenario.name, "seed": seed, "wall_time_s": wall,
                                        "provisioning_agent": scenario.provisioning_agent.name,
                                        "prompt_agent": scenario.prompt_agent.name, "streamed": streamed,
                                        "shards": shards, "warnings": warnings})
    write_run_report(out, scenario.name, seed, result.summary, trace, users, warnings, result.conservation,
                     profile_notes(scenario.quality.profile))
    return RunOutput(out, result, wall)


def _streamed_report_tables(out: Path):
    """What the report of a streamed run plots: the first image rows of the trace, two columns of the users."""
    trace_file = pq.ParquetFile(out / "trace.parquet")
    frames, rows = [], 0
    for group in range(trace_file.num_row_groups):
        if rows >= REPORT_SAMPLE_ROWS:
            break
        frame = trace_file.read_row_group(group).to_pandas()
        frames.append(frame)
        rows += len(frame)
    trace = pd.concat(frames, ignore_index=True).head(REPORT_SAMPLE_ROWS) if frames else pd.DataFrame()
    users_file = pq.ParquetFile(out / "users.parquet")
    small = users_file.metadata.num_rows <= 1000  # the report lists the users of small runs
    users = users_file.read(columns=None if small else ["rounds", "satisfied"]).to_pandas()
    return trace, users
