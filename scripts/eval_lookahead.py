"""The lookahead oracle against static, "N_max images, equal power" and the one-round oracle, in the world.

Runs each agent on the same seeds (``channel.delivery`` statistical by default, for speed) and
prints each agent's mean per-user utility over the users' whole stay (the run's ``mean_utility``)
and the lookahead's paired differences with 95% intervals and wins per seed.

Usage: ``python scripts/eval_lookahead.py [SCENARIO] [SEEDS] [--first-seed S] [--delivery bytes|statistical]``
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.config import AgentConfig, load_scenario  # noqa: E402
from sim.stats import mean_ci, paired_difference  # noqa: E402
from sim.world.simulation import World  # noqa: E402


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default=str(root / "scenarios" / "three_users.yaml"))
    parser.add_argument("seeds", nargs="?", type=int, default=10)
    parser.add_argument("--delivery", choices=["statistical", "bytes"], default="statistical")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + SEEDS - 1")
    args = parser.parse_args()
    sc = load_scenario(args.scenario)
    sc = sc.model_copy(update={"channel": sc.channel.model_copy(update={"delivery": args.delivery})})
    n_max = sc.service.max_images_per_round
    arms = {
        "static (N=4)": ("static", {"n_images": 4}),
        f"N={n_max}, equal P": ("static", {"n_images": n_max}),
        "one-round oracle": ("oracle", {}),
        "lookahead": ("lookahead", {}),
    }
    print(f"{sc.name}: seeds {args.first_seed}-{args.first_seed + args.seeds - 1}, delivery {args.delivery}; {platform.machine()}, Python {platform.python_version()}")
    results = {}
    for label, (name, params) in arms.items():
        arm = sc.model_copy(update={"provisioning_agent": AgentConfig(name=name, params=params)})
        t = time.perf_counter()
        results[label] = np.array([World(arm, seed=s).run().summary["mean_utility"]
                                   for s in range(args.first_seed, args.first_seed + args.seeds)])
        m, lo, hi = mean_ci(results[label])
        print(f"  {label:18s} mean utility per user {m:+.3f} [{lo:+.3f}, {hi:+.3f}]  ({time.perf_counter() - t:.0f} s)",
              flush=True)
    ours = results["lookahead"]
    for label, other in results.items():
        if label == "lookahead":
            continue
        m, lo, hi = paired_difference(ours, other)
        print(f"  lookahead - {label:18s} {m:+.3f} [{lo:+.3f}, {hi:+.3f}], wins {int((ours > other).sum())}/{len(ours)}")


if __name__ == "__main__":
    main()
