"""Figures of docs/quality_model.md computed from the shipped quality model (not from the datasets).

Prints the shipped prompt set's complexity range and mean, the complexity above which the raw
prompt beats strategy 6 (the crossover of their mean scores), and P(one image >= t) of a typical
prompt (u = 0) at c = 0 and c = 1 for raw and strategy 6, t = 7.5 / 8.0 / 8.5.

Usage: ``python scripts/quality_tables.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.optimize import brentq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.model.quality import QualityModel  # noqa: E402
from sim.prompting.prompts import load_prompts  # noqa: E402

THRESHOLDS = (7.5, 8.0, 8.5)


def main() -> None:
    qm = QualityModel.default()
    c = np.array([p.complexity for p in load_prompts()])
    print(f"shipped prompt set: {len(c)} prompts, complexity {c.min():.2f} to {c.max():.2f}, mean {c.mean():.4f}")
    gap = lambda x: float(qm.mean_score(x, 6) - qm.mean_score(x, 0))  # noqa: E731
    if gap(0.0) > 0 > gap(1.0):
        print(f"strategy 6 beats raw below c = {brentq(gap, 0.0, 1.0):.3f}; raw is better above")
    print("typical prompt (u = 0), P(one image >= t):")
    print(f"{'':>18} {'c':>3} " + " ".join(f"t = {t:<5}" for t in THRESHOLDS))
    for complexity in (0.0, 1.0):
        for strategy, name in ((0, "raw"), (6, "strategy 6")):
            p = qm.prob_best_of_n_at_least(np.array(THRESHOLDS), complexity, strategy, 1)
            print(f"{name + ', n = 1':>18} {complexity:>3.0f} " + " ".join(f"{v:<9.3f}" for v in p))


if __name__ == "__main__":
    main()
