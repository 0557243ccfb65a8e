"""Throughput of the surrogate world: served users per wall minute, beside bare SimPy on the same machine.

Runs a scenario (default ``scenarios/poisson_1000.yaml``: 1,000 Poisson users at two MASPs) once per seed,
through the same path as ``python -m sim run`` (records written; streamed to Parquet in chunks as ``run`` does,
from 10,000 users, or as ``--stream``/``--no-stream`` say; ``--shards`` processes), and prints what the simulator
processed per wall-clock minute of simulation (the run's ``wall_time_s``: without building the world and writing
the report, as ``run`` reports it). First it measures bare SimPy on this machine (processes that only wait on
timeouts, in the same run) and reports the world's rate against it too: the cost of one served user in bare SimPy
events, a figure that carries over between machines better than users per minute. Then the peak resident memory
of the run (this process and its shard processes). In the bytes mode it prints what rendering and encoding one
surrogate image costs and, with a picture per seed, the served users per minute that cost alone allows on this
machine's cores (``--pictures K|none`` sets ``generator.surrogate.pictures_per_prompt``); in the statistical
mode, how many epochs one evaluation call takes on average (``World.evaluates_epochs_together``), in one process
and in a shard.

Usage: ``python scripts/bench_world.py [SCENARIO] [--seeds 1] [--delivery bytes|statistical] [--users N]
[--shards K] [--stream | --no-stream] [--pictures K|none]``
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import simpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.config import load_scenario  # noqa: E402
from sim.world.runner import run_scenario  # noqa: E402


def simpy_events_per_s(n_processes: int = 100, events: int = 300_000) -> float:
    """Bare SimPy: ``n_processes`` processes that each wait on timeouts; processed events per wall second."""
    env = simpy.Environment()
    per_process = events // n_processes

    def ticker(k: int):
        for _ in range(per_process):
            yield env.timeout(1.0 + k * 1e-3)

    for k in range(n_processes):
        env.process(ticker(k))
    t0 = time.perf_counter()
    env.run()
    return n_processes * per_process / (time.perf_counter() - t0)


def render_encode_ms(scenario, n: int = 50) -> tuple[float, float]:
    """Milliseconds to render and encode one surrogate image of the scenario's size and format (the bytes mode's
    cost per image before the channel), and to decode it again (what the SSIM of a damaged image needs as its
    reference: a JPEG's pixels are decoded only for an image the channel damaged). The best of three passes."""
    from sim.generation.render import decode_image, encode_image, render_image
    from sim.prompting.prompts import load_prompts

    prompts = [p.text for p in load_prompts(None)][:n]
    g = scenario.generator
    best, best_decode = math.inf, math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        encoded = [encode_image(render_image(prompt, k, g.image_size), g.image_format, g.jpeg_quality)
                   for k, prompt in enumerate(prompts)]
        t1 = time.perf_counter()
        for data in encoded:
            decode_image(data, g.image_format, (g.image_size, g.image_size, 3))
        best, best_decode = min(best, t1 - t0), min(best_decode, time.perf_counter() - t1)
    return 1e3 * best / len(prompts), 1e3 * best_decode / len(prompts)


def epochs_per_call(scenario, only_masps=None, users: int = 4_000) -> float:
    """Statistical epochs per evaluation call (``World.evaluates_epochs_together``) over the first ``users`` users,
    in one process or in a shard simulating ``only_masps``; NaN when the world evaluates each epoch alone."""
    from sim.world.simulation import World

    sc = scenario.model_copy(update={"arrivals": scenario.arrivals.model_copy(
        update={"n_users": min(users, scenario.arrivals.n_users)})})
    world = World(sc, seed=sc.seed, only_masps=only_masps)
    world.run()
    return world.epochs_evaluated / world.evaluation_calls if world.evaluation_calls else float("nan")


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident memory (MiB) of this process and of its largest finished child process (Linux: KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default=str(root / "scenarios" / "poisson_1000.yaml"))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--delivery", choices=["bytes", "statistical"], help="channel.delivery (default: the scenario's)")
    parser.add_argument("--users", type=int, help="arrivals.n_users (default: the scenario's)")
    parser.add_argument("--shards", type=int, default=1, help="processes for one replication's MASPs (default 1)")
    parser.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                        help="stream the records to Parquet (bounded memory; default: as `python -m sim run`, from "
                             "10,000 users)")
    parser.add_argument("--pictures", type=lambda v: None if v == "none" else int(v), default=False,
                        help="generator.surrogate.pictures_per_prompt: K or 'none' (default: the scenario's)")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    if args.pictures is not False:
        from sim.world.sweep import cells

        scenario = cells(scenario, {"generator.surrogate.pictures_per_prompt": [args.pictures]})[0][1]
    if args.delivery:
        scenario = scenario.model_copy(update={"channel": scenario.channel.model_copy(update={"delivery": args.delivery})})
    if args.users:
        scenario = scenario.model_copy(update={"arrivals": scenario.arrivals.model_copy(update={"n_users": args.users})})
    events = simpy_events_per_s()
    from sim.world.runner import STREAM_FROM_USERS

    stream = scenario.arrivals.n_users >= STREAM_FROM_USERS if args.stream is None else args.stream
    pictures = scenario.generator.surrogate.pictures_per_prompt
    print(f"{scenario.name} ({scenario.channel.delivery} delivery): {scenario.arrivals.n_users:,} users, "
          f"{len(scenario.masps)} MASPs, {args.shards} shard(s){', streamed' if stream else ''}"
          f"{f', {pictures} pictures per prompt' if scenario.channel.delivery == 'bytes' and pictures else ''}; "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"bare SimPy on this machine: {events:,.0f} events/s")
    render_ms = None
    if scenario.channel.delivery == "bytes":
        render_ms, decode_ms = render_encode_ms(scenario)
        print(f"render + encode of one {scenario.generator.image_size}-px {scenario.generator.image_format} "
              f"surrogate image: {render_ms:.2f} ms; decoding it: {decode_ms:.2f} ms (only for a damaged image)")
    else:
        from sim.world.sharding import shard_masps

        shard = shard_masps(scenario, max(args.shards, 2))[0]
        print(f"statistical epochs per evaluation call (first 4,000 users): {epochs_per_call(scenario):.2f} in one "
              f"process, {epochs_per_call(scenario, shard):.2f} in a shard of MASPs {', '.join(shard)}")
    print(f"{'seed':>4} {'wall s':>8} {'with output s':>13} {'users/min':>9} {'served/min':>10} {'rounds/min':>10} {'served':>7} "
          f"{'mean rounds':>11} {'SimPy events per served user':>28}")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            output = run_scenario(scenario, out=Path(tmp) / f"seed{seed}", seed=seed, quiet=True,
                                  stream=stream, shards=args.shards)
            total = time.perf_counter() - t0  # with building the world, writing the tables and the report
            wall = output.wall_time_s  # the simulation (streamed runs: with writing their records)
            s = output.result.summary
            departed = s["served_users"] + s["unserved_users"]
            rounds = s["mean_rounds"] * departed
            served_per_s = s["served_users"] / wall
            print(
                f"{seed:>4} {wall:>8.1f} {total:>13.1f} {60 * departed / wall:>9,.0f} {60 * served_per_s:>10,.0f} "
                f"{60 * rounds / wall:>10,.0f} {s['served_users']:>7,} {s['mean_rounds']:>11.2f} "
                f"{events / served_per_s:>28,.0f}"
            )
            if render_ms is not None and pictures is None:  # what rendering alone allows: every image rendered, on every core
                images = output.result.conservation["images_requested"]
                cores = os.cpu_count() or 1
                print(f"     rendering alone: {images:,} images x {render_ms:.2f} ms on {cores} cores = at least "
                      f"{images * render_ms / 1e3 / cores:.1f} s, so at most "
                      f"{60 * s['served_users'] / (images * render_ms / 1e3 / cores):,.0f} served/min")
    own, children = peak_rss_mib()
    shard_peak = f", {children:,.0f} MiB (largest shard process)" if args.shards > 1 else ""
    print(f"peak resident memory: {own:,.0f} MiB (this process){shard_peak}"
          + ("" if stream else "; records held in memory (--stream bounds them)"))


if __name__ == "__main__":
    main()
