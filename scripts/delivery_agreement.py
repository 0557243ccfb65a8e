"""Do the bytes and statistical delivery modes agree? The table of sim.world.agreement for its three reference cases.

Each case runs in both modes on the same seeds; per metric, both means with 95% CIs, the difference, Welch's
p-value and Holm's correction across the table. Usage: ``python scripts/delivery_agreement.py [--scale 1.0]``
(``--scale`` multiplies every case's seeds).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.paper.common import fmt_ci  # noqa: E402
from sim.world.agreement import agreement, reference_cases  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every case's seeds")
    args = parser.parse_args()
    started = time.perf_counter()
    table = agreement(reference_cases(args.scale))
    print("| case | seeds | metric | bytes | statistical | p | p (Holm) |")
    print("|---|---|---|---|---|---|---|")
    for r in table.itertuples(index=False):
        print(f"| {r.case} | {r.seeds} | {r.metric} | {fmt_ci(r.bytes_mean, r.bytes_low, r.bytes_high)} | "
              f"{fmt_ci(r.statistical_mean, r.statistical_low, r.statistical_high)} | {r.p:.3g} | {r.p_holm:.3g} |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
