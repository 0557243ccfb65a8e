"""Throughput of the surrogate world: wall time, users, rounds and images per minute.

Runs a scenario (default ``scenarios/poisson_1000.yaml``: 1,000 Poisson users at two
MASPs) once per seed and prints what the simulator processed per wall-clock minute.

Usage: ``python scripts/bench_world.py [SCENARIO] [--seeds 1] [--delivery bytes|statistical]``
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.config import load_scenario  # noqa: E402
from sim.world.simulation import World  # noqa: E402


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default=str(root / "scenarios" / "poisson_1000.yaml"))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--delivery", choices=["bytes", "statistical"], help="channel.delivery (default: the scenario's)")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    if args.delivery:
        scenario = scenario.model_copy(update={"channel": scenario.channel.model_copy(update={"delivery": args.delivery})})
    print(f"{scenario.name} ({scenario.channel.delivery} delivery): {scenario.arrivals.n_users} users; "
          f"{platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"{'seed':>4} {'wall s':>7} {'users/min':>9} {'served/min':>10} {'rounds/min':>10} {'images/s':>8} "
          f"{'served':>6} {'mean rounds':>11} {'mean latency s':>14}")
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        result = World(scenario, seed=seed).run()
        wall = time.perf_counter() - t0
        s = result.summary
        departed = s["served_users"] + s["unserved_users"]
        print(
            f"{seed:>4} {wall:>7.1f} {60 * departed / wall:>9.0f} {60 * s['served_users'] / wall:>10.0f} "
            f"{60 * len(result.rounds) / wall:>10.0f} {len(result.images) / wall:>8.0f} {s['served_users']:>6} "
            f"{s['mean_rounds']:>11.2f} {s['mean_latency_s']:>14.1f}"
        )


if __name__ == "__main__":
    main()
