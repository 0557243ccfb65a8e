"""Does a scenario's outcome depend on how many pictures the surrogate draws per prompt?

Runs a bytes-mode scenario (default ``scenarios/poisson_1000.yaml``) on the same seeds with a picture per seed
(``generator.surrogate.pictures_per_prompt: null``) and with K pictures per prompt, and prints, per summary
metric, both means with 95% CIs, the paired difference (K - per seed) with its 95% CI, the paired t-test's p and
Holm's correction across the metrics (:func:`sim.world.agreement.paired_agreement`). The runs share every random stream: only the pictures (their bytes, hence the bits the channel can hit,
and what a damaged image is compared with) differ.

Usage: ``python scripts/pictures_agreement.py [SCENARIO] [--pictures 4] [--seeds 10] [--first-seed 0]
[--users N] [--workers 2]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.config import Scenario, load_scenario  # noqa: E402
from sim.paper.common import fmt_ci  # noqa: E402
from sim.world.agreement import METRICS, paired_agreement  # noqa: E402
from sim.world.sweep import cells  # noqa: E402


def with_pictures(scenario: Scenario, k: int | None) -> Scenario:
    """``scenario`` with ``generator.surrogate.pictures_per_prompt`` set to ``k`` (as a sweep sets a key)."""
    return cells(scenario, {"generator.surrogate.pictures_per_prompt": [k]})[0][1]


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default=str(root / "scenarios" / "poisson_1000.yaml"))
    parser.add_argument("--pictures", type=int, default=4, help="K pictures per prompt (default 4)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--users", type=int, help="arrivals.n_users (default: the scenario's)")
    parser.add_argument("--workers", type=int, help="processes (default: one per core)")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    if scenario.channel.delivery != "bytes" or scenario.generator.backend != "surrogate":
        parser.error("the scenario must use the bytes delivery mode and the surrogate generator")
    if args.users:
        scenario = scenario.model_copy(update={"arrivals": scenario.arrivals.model_copy(update={"n_users": args.users})})
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    started = time.perf_counter()
    table = paired_agreement(with_pictures(scenario, None), with_pictures(scenario, args.pictures), seeds,
                             METRICS + ("served_users", "mean_qoe"), workers=args.workers)
    print(f"{scenario.name}: {scenario.arrivals.n_users:,} users, seeds {seeds.start}-{seeds.stop - 1}; "
          f"a picture per seed against {args.pictures} per prompt")
    print(f"| metric | a picture per seed | {args.pictures} per prompt | paired difference | p | p (Holm) |")
    print("|---|---|---|---|---|---|")
    for r in table.itertuples(index=False):
        print(f"| {r.metric} | {fmt_ci(r.base_mean, r.base_low, r.base_high)} | "
              f"{fmt_ci(r.variant_mean, r.variant_low, r.variant_high)} | "
              f"{fmt_ci(r.difference_mean, r.difference_low, r.difference_high)} | {r.p:.3g} | {r.p_holm:.3g} |")
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
