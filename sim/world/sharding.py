"""One replication on several processes: its MASPs split into shards that run side by side.

With ``service.association: nearest`` a user's MASP depends on its position alone, so the MASPs of a
replication never share a user, and every random draw is keyed by user, round and image
(:class:`sim.seeding.RandomStreams`). When the agents also decide from each observation alone
(``per_observation``: no state kept between decisions, no random draws), a world that simulates some of
the MASPs with their users (``World(only_masps=...)``) produces exactly the records the whole world
produces for them. :func:`run_sharded` runs the shards on an executor and merges their records and exact
tallies: the summary equals the single-process run's bit for bit, and the records are the same records.

Use it for one long replication on a multi-core machine (``python -m sim run FILE --shards 2``); for many
replications, running them side by side (``compare``, ``sweep``) already uses every core.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sim.config import Scenario
from sim.executors import run_tasks
from sim.world.records import (
    FaultRecord,
    ImageRecord,
    ImageTally,
    RoundRecord,
    UserRecord,
    UserTally,
    conservation,
    summarise,
)
from sim.world.simulation import World, WorldResult, users_of_masps
from sim.world.streaming import TRACE_SCHEMA, USERS_SCHEMA, ChunkFiles, ChunkReader, ParquetTable, fault_table, streamed


def sharding_problems(scenario: Scenario, shards: int) -> list[str]:
    """Why this scenario cannot run in ``shards`` shards (empty when it can)."""
    problems = []
    if shards > len(scenario.masps):
        problems.append(f"--shards {shards}: the scenario has {len(scenario.masps)} MASP(s); a shard needs one at least")
    if scenario.service.association != "nearest":
        problems.append("service.association: shards need nearest association (with least_loaded a user's MASP "
                        "depends on the other MASPs' queues)")
    if scenario.faults.any and scenario.faults.on_masp_down == "reassociate":
        problems.append("faults.on_masp_down: reassociate moves users between MASPs, which shards simulate apart; "
                        "use wait or give_up, or run it in one process")
    world = World(scenario, seed=scenario.seed)
    for kind, agent in (("provisioning_agent", world.provisioning_agent), ("prompt_agent", world.prompt_agent)):
        if not getattr(agent, "per_observation", False):
            problems.append(f"{kind}: {agent.name!r} keeps state or draws random numbers across decisions, so "
                            "MASPs simulated apart would not see the same decisions; run it in one process")
    return problems


def shard_masps(scenario: Scenario, shards: int) -> list[list[str]]:
    """The MASP names of each shard: dealt round-robin in scenario order."""
    names = [m.name for m in scenario.masps]
    return [names[k::shards] for k in range(shards)]


@dataclass
class ShardResult:
    users: UserTally
    images: ImageTally
    arrived: int
    end_s: float
    user_records: list[UserRecord]
    round_records: list[RoundRecord]
    image_records: list[ImageRecord]
    fault_records: list[FaultRecord]
    #: The shard's books: users arrived and still in service, images requested and still in flight.
    counts: tuple[int, int, int, int]


def scan_users(scenario: Scenario, seed: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Users ``start`` to ``stop - 1`` of a replication: each one's nearest MASP and draws
    (:meth:`World.scan_users`), a task the shards' executor runs before the shards."""
    return World(scenario, seed=seed).scan_users(start, stop)


def run_shard(scenario: Scenario, seed: int, masps: list[str], stream_dir: str | None = None,
              progress_file: str | None = None,
              own_users: tuple[np.ndarray, np.ndarray] | None = None) -> ShardResult:
    """Simulate ``masps`` and their users; records go to ``stream_dir`` (:class:`~sim.world.streaming.ChunkFiles`,
    which :class:`TableMerger` appends to the run's tables) or come back in the result.

    ``progress_file``: where the shard keeps ``departed total`` up to date (a few hundred times a run).
    ``own_users``: the shard's users and their draws (:func:`scan_users`; found by the shard when not given).
    """
    world = World(scenario, seed=seed, only_masps=masps, own_users=own_users)
    if progress_file is not None:
        world.on_user_done = _progress_writer(Path(progress_file), world.n_users)
    if stream_dir is not None:
        Path(stream_dir).mkdir(parents=True, exist_ok=True)
    with streamed(world, stream_dir, table=ChunkFiles):
        result = world.run()
    horizon = scenario.service.horizon_s
    end = world.env.now if horizon is None else float(horizon)
    books = result.conservation
    counts = (books["users_arrived"], books["users_in_service"], books["images_requested"], books["images_in_flight"])
    return ShardResult(world.user_tally, world.image_tally, result.summary["users"], end,
                       result.users, result.rounds, result.images, result.faults, counts)


def _progress_writer(path: Path, total: int) -> Callable[[int, int], None]:
    step = max(1, total // 500)
    _write_progress(path, 0, total)

    def update(done: int, _total: int) -> None:
        if done % step == 0 or done == total:
            _write_progress(path, done, total)

    return update


def _write_progress(path: Path, done: int, total: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{done} {total}")
    tmp.replace(path)


def _read_progress(paths: list[Path]) -> tuple[int, int]:
    done = total = 0
    for path in paths:
        try:
            d, t = path.read_text().split()
        except (OSError, ValueError):
            continue
        done, total = done + int(d), total + int(t)
    return done, total


def run_sharded(scenario: Scenario, seed: int | None = None, shards: int = 2, stream_to: Path | None = None,
                executor: str | None = None, address: str | None = None,
                on_shard_done: Callable[[], None] | None = None,
                on_user_done: Callable[[int, int], None] | None = None) -> WorldResult:
    """One replication of ``scenario`` in ``shards`` processes (module docstring); the same result as ``World.run``.

    ``stream_to``: write ``trace.parquet`` and ``users.parquet`` there, the shards' chunks taking turns
    (:class:`TableMerger`; each sorted by time, as :class:`~sim.world.streaming.ParquetSink` writes them); the
    result then carries the summary only. ``on_user_done(done, total)`` follows the users who left, over all
    shards (polled from the shards' progress files twice a second). Raises ``ValueError`` naming what prevents
    sharding.
    """
    seed = scenario.seed if seed is None else int(seed)
    shards = int(shards)
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    problems = sharding_problems(scenario, shards)
    if problems:
        raise ValueError("; ".join(problems))
    groups = shard_masps(scenario, shards)
    parts_dir = None if stream_to is None else Path(stream_to) / ".shards"
    own_users = _users_of_shards(scenario, seed, groups, executor, address)
    if stream_to is not None:
        Path(stream_to).mkdir(parents=True, exist_ok=True)
    merger = None if parts_dir is None else TableMerger([parts_dir / f"shard-{k}" for k in range(len(groups))],
                                                      Path(stream_to))
    try:
        parts = _run_shards(scenario, seed, groups, parts_dir, own_users, executor, address, merger,
                            on_shard_done, on_user_done)
        users, images = UserTally(), ImageTally()
        for part in parts:
            users.merge(part.users)
            images.merge(part.images)
        end = max(part.end_s for part in parts)
        summary = summarise(users, images, sum(part.arrived for part in parts), end)
        arrived, in_service, requested, in_flight = (sum(c) for c in zip(*(part.counts for part in parts)))
        books = conservation(arrived, in_service, users, requested, in_flight, images)
        # a shard whose users all left early stopped recording its faults; the whole run records them to its end
        late = _late_fault_records(scenario, seed, groups, parts, end)
        faults = sorted([r for part in parts for r in part.fault_records] + late,
                        key=lambda r: (r.t_s, r.target, r.state))
        if merger is not None:
            merger.finish(late)
    except BaseException:
        if merger is not None:
            merger.abort()
        raise
    finally:
        if parts_dir is not None:
            shutil.rmtree(parts_dir, ignore_errors=True)
    if merger is not None:
        return WorldResult(seed, [], [], [], summary, images.images, books, faults)
    user_records = sorted((r for part in parts for r in part.user_records), key=lambda r: r.user_id)
    rounds = [r for part in parts for r in part.round_records]
    images_records = [r for part in parts for r in part.image_records]
    return WorldResult(seed, user_records, rounds, images_records, summary, images.images, books, faults)


def _run_shards(scenario: Scenario, seed: int, groups: list[list[str]], parts_dir: Path | None,
                own_users: list[tuple[np.ndarray, np.ndarray]], executor: str | None, address: str | None,
                merger: TableMerger | None, on_shard_done: Callable[[], None] | None,
                on_user_done: Callable[[int, int], None] | None) -> list[ShardResult]:
    """Run the shards on the executor; meanwhile report progress (twice a second) and let ``merger`` append the
    chunks the shards have written."""
    with tempfile.TemporaryDirectory(prefix="sim-shards-") as progress_dir:
        progress = [Path(progress_dir) / f"shard-{k}.progress" for k in range(len(groups))]
        tasks = [(scenario, seed, group, None if parts_dir is None else str(parts_dir / f"shard-{k}"),
                  str(progress[k]), own_users[k]) for k, group in enumerate(groups)]
        with ThreadPoolExecutor(max_workers=1) as waiter:
            running = waiter.submit(run_tasks, run_shard, tasks, executor=executor, workers=len(groups),
                                    address=address, on_done=on_shard_done)
            polled = 0.0
            while not running.done():
                if on_user_done is not None and time.monotonic() - polled >= 0.5:
                    on_user_done(*_read_progress(progress))
                    polled = time.monotonic()
                if merger is None or not merger.append_ready():
                    wait([running], timeout=0.5 if merger is None else 0.05)
            parts: list[ShardResult] = running.result()
        if on_user_done is not None:
            on_user_done(*_read_progress(progress))
    return parts


def _users_of_shards(scenario: Scenario, seed: int, groups: list[list[str]], executor: str | None,
                     address: str | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each shard's users and their draws: which MASP each user goes to, found by the executor's processes side
    by side, each scanning a share of the users (:func:`scan_users`); the whole scan is not kept."""
    bounds = np.linspace(0, scenario.arrivals.n_users, len(groups) + 1).astype(int).tolist()
    scans = run_tasks(scan_users, [(scenario, seed, a, b) for a, b in itertools.pairwise(bounds)],
                      executor=executor, workers=len(groups), address=address)
    scan = (np.concatenate([n for n, _ in scans]), np.concatenate([d for _, d in scans]))
    names = [m.name for m in scenario.masps]
    return [users_of_masps(scan, names, group) for group in groups]


def _late_fault_records(scenario: Scenario, seed: int, groups: list[list[str]], parts: list[ShardResult],
                        end: float) -> list[FaultRecord]:
    """The fault records of each shard between its own end and the run's (none without faults)."""
    if not scenario.faults.any or all(part.end_s >= end for part in parts):
        return []
    world = World(scenario, seed=seed)  # its fault timelines are the shards' (the same streams)
    return [r for group, part in zip(groups, parts) for r in world.fault_records_between(group, part.end_s, end)]


class TableMerger:
    """Appends the shards' chunks (:class:`~sim.world.streaming.ChunkFiles` in ``parts_dirs``) to the run's
    ``trace.parquet`` and ``users.parquet`` in ``out`` while the shards run, so that their end leaves little to
    write: chunk 0 of every shard in shard order, then chunk 1 of every shard, and so on (a shard that has no
    more is passed over). The order is fixed whichever shard is ahead: the tables are the same bytes from run to
    run. Each chunk file is removed once appended (bounded disk and memory)."""

    def __init__(self, parts_dirs: list[Path], out: Path):
        self._merges = [_Merge(ParquetTable(out, name, schema), [ChunkReader(d, name) for d in parts_dirs])
                        for name, schema in (("trace", TRACE_SCHEMA), ("users", USERS_SCHEMA))]

    def append_ready(self) -> bool:
        """Append every chunk whose turn has come and that is whole; whether any was."""
        appended = False
        for merge in self._merges:
            while not all(reader.finished() for reader in merge.readers):
                reader = merge.readers[merge.turn]
                if not reader.finished():
                    if not reader.ready():
                        break  # its turn, and its next chunk is still being written
                    merge.table.write_table(reader.take())
                    appended = True
                merge.turn = (merge.turn + 1) % len(merge.readers)
        return appended

    def finish(self, faults: list[FaultRecord] = ()) -> None:
        """Once every shard has ended: append what is left, then ``faults`` as a row group of their own, and move
        both tables into place."""
        self.append_ready()
        for merge in self._merges:
            unread = [str(r.directory) for r in merge.readers if not r.finished()]
            if unread:
                raise RuntimeError(f"shard tables not published (missing *.chunks): {unread}")
        trace, users = (merge.table for merge in self._merges)
        if faults:
            trace.write_table(fault_table(list(faults)))
        for table in (trace, users):
            table.close()
        for table in (trace, users):
            table.publish()

    def abort(self) -> None:
        for merge in self._merges:
            merge.table.abort()


@dataclass
class _Merge:
    """One table being merged: where it goes, its shards' chunks, and whose chunk comes next."""

    table: ParquetTable
    readers: list[ChunkReader]
    turn: int = 0


__all__ = ["ShardResult", "TableMerger", "run_shard", "run_sharded", "scan_users", "shard_masps", "sharding_problems"]
