"""Soak test: a long run with every fault kind and a flaky assessor, its books, speed and memory over time.

    python scripts/soak_faults.py                       # 100,000 users of scenarios/poisson_100k.yaml
    python scripts/soak_faults.py --users 5000 --out results/soak/small

The scenario's MASPs fail at random (mean 1 h up, 2 min repair), so do their GPUs (mean 30 min up, 1 min
repair) and links (mean 10 min up, 10 s blockages); the assessor is down for a scheduled 30 min and fails 5%
of requests on its own; users wait for a MASP that is down. Records stream to Parquet (bounded memory). Prints
and writes to ``OUT/soak.json``: wall time, users and served users per wall minute, the conservation check,
lost images by reason, assessment failures, fault events, and the resident memory sampled as users leave
(memory is flat when the last samples are no higher than the early ones, up to a small margin).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.config import load_scenario, parse_scenario  # noqa: E402
from sim.world.records import conservation_line  # noqa: E402
from sim.world.simulation import World  # noqa: E402
from sim.world.streaming import streamed  # noqa: E402

SOAK_FAULTS = {
    "masp_failures": {"mtbf_s": 3600.0, "mttr_s": 120.0},
    "gpu_failures": {"mtbf_s": 1800.0, "mttr_s": 60.0},
    "link_failures": {"mtbf_s": 600.0, "mttr_s": 10.0},
    "assessor_outages": [{"start_s": 10_000.0, "end_s": 11_800.0}],
    "assessor_failure_probability": 0.05,
    "on_masp_down": "wait",
}


def rss_mib() -> float:
    """Resident memory of this process now, MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def soak(scenario_path: Path, users: int | None, out: Path, samples: int = 20) -> dict:
    """Run the soak and return its figures (see the module docstring)."""
    data = load_scenario(scenario_path).model_dump(mode="json")
    data["faults"] = SOAK_FAULTS
    if users is not None:
        data["arrivals"]["n_users"] = int(users)
    scenario = parse_scenario(data, source=f"{scenario_path} with the soak's faults")
    n = scenario.arrivals.n_users
    out.mkdir(parents=True, exist_ok=True)
    memory: list[tuple[int, float]] = []
    every = max(1, n // samples)

    def on_user_done(done: int, _total: int) -> None:
        if done % every == 0 or done == n:
            memory.append((done, round(rss_mib(), 1)))

    started = time.perf_counter()
    world = World(scenario, on_user_done=on_user_done)
    with streamed(world, out):
        result = world.run()
    wall = time.perf_counter() - started
    books = result.conservation
    s = result.summary
    rss = [m for _, m in memory]
    early = max(rss[: max(1, len(rss) // 4)])
    figures = {
        "users": n,
        "wall_s": round(wall, 1),
        "users_per_wall_min": round(n / wall * 60),
        "served_per_wall_min": round(s["served_users"] / wall * 60),
        "served_users": s["served_users"],
        "lost_images": books["images_lost"],
        "assessment_failures": s["assessment_failures"],
        "conservation": books,
        "conservation_line": conservation_line(books),
        "rss_mib_by_users_done": memory,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_growth_after_first_quarter_mib": round(max(rss) - early, 1),
        "sim_time_s": s["sim_time_s"],
    }
    trace = pq.read_table(out / "trace.parquet", columns=["record", "state"]).to_pandas()
    figures["fault_events"] = int(((trace["record"] == "fault") & (trace["state"] == "down")).sum())
    (out / "soak.json").write_text(json.dumps(figures, indent=1))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default=str(ROOT / "scenarios" / "poisson_100k.yaml"))
    parser.add_argument("--users", type=int, default=None, help="users (default: the scenario's)")
    parser.add_argument("--out", default=str(ROOT / "results" / "soak" / "poisson_100k"))
    args = parser.parse_args()
    figures = soak(Path(args.scenario), args.users, Path(args.out))
    print(figures["conservation_line"])
    print(f"{figures['users']} users in {figures['wall_s']} s: {figures['users_per_wall_min']} users/min, "
          f"{figures['served_per_wall_min']} served/min; lost images {figures['lost_images']}; "
          f"assessment failures {figures['assessment_failures']}; fault outages {figures['fault_events']}")
    print(f"peak RSS {figures['peak_rss_mib']} MiB; growth after the first quarter "
          f"{figures['rss_growth_after_first_quarter_mib']} MiB; samples {figures['rss_mib_by_users_done']}")
    sys.exit(0 if figures["conservation"]["holds"] else 1)


if __name__ == "__main__":
    main()
