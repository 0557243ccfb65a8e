"""One oracle run in a local Dask worker, with Dask's default worker environment and with this project's.

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; :data:`sim.executors.DASK_WORKER_ENVIRON`
leaves it out. The script times the same run (``scenarios/sweep_load_power.yaml``, the oracle agent, seed 1,
after a warm-up run) in a one-worker cluster of :func:`sim.executors.local_dask_cluster` started each way (the
default one first, so the second also shows that what the first left in this process's environment is undone),
and in this process.

Usage: ``python scripts/bench_dask_workers.py [--repeats 2]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.config import load_scenario  # noqa: E402
from sim.executors import DASK_WORKER_ENVIRON, local_dask_cluster, pin_threads  # noqa: E402
from sim.world.compare import make_arms, run_arm_seed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timed_run(scenario, arm, seed: int) -> float:
    pin_threads()
    t0 = time.perf_counter()
    run_arm_seed(scenario, arm, seed)
    return time.perf_counter() - t0


def in_dask(environ: dict | None, scenario, arm, repeats: int) -> list[float]:
    from distributed import Client

    cluster = local_dask_cluster(1, environ)
    client = Client(cluster)
    try:
        client.submit(timed_run, scenario, arm, 0, pure=False).result()  # warm-up: imports, caches
        return [client.submit(timed_run, scenario, arm, 1, pure=False).result() for _ in range(repeats)]
    finally:
        client.close()
        cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    scenario = load_scenario(ROOT / "scenarios" / "sweep_load_power.yaml")
    arm = make_arms(scenario, ["oracle"], None)[0]
    timed_run(scenario, arm, 0)
    here = [timed_run(scenario, arm, 1) for _ in range(args.repeats)]
    default = in_dask(None, scenario, arm, args.repeats)
    ours = in_dask(DASK_WORKER_ENVIRON, scenario, arm, args.repeats)
    for label, times in (("this process", here), ("Dask worker, Dask's default environment", default),
                         ("Dask worker, DASK_WORKER_ENVIRON", ours)):
        print(f"{label:42s} {min(times):6.2f} s (best of {len(times)})")


if __name__ == "__main__":
    main()
