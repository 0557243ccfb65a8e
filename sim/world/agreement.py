"""Do two ways of running a scenario agree on its summary metrics?

:func:`agreement`: the two delivery modes, ``bytes`` (real image bytes, bit flips, measured damage) against
``statistical``. It runs a scenario in both modes on the same seeds and compares each summary metric: the
modes draw from different random streams, so the comparison is two-sample (Welch's t-test on the per-seed
values), with Holm's correction across the metrics and scenarios of one table. ``python
scripts/delivery_agreement.py`` prints the table for the three reference cases of :data:`CASES`.

:func:`paired_agreement`: two versions of one scenario that draw the same random streams (e.g. the surrogate's
``pictures_per_prompt``, which changes the pictures and nothing else), compared seed by seed: the paired
difference with its 95% CI, the paired t-test and Holm's correction across the metrics (``python
scripts/pictures_agreement.py``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from sim.config import Scenario, parse_scenario
from sim.executors import run_tasks
from sim.stats import holm_adjust, mean_ci, paired_difference, paired_t_test
from sim.world.simulation import World

#: Summary metrics compared between the modes.
METRICS = ("mean_utility", "mean_rounds", "single_round_success", "mean_best_score", "undecodable_rate")

#: The reference cases: few users, many users, a poor channel (scenario data, seeds).
CASES: dict[str, tuple[dict[str, Any], int]] = {
    "few users (3, batch)": ({"name": "few", "arrivals": {"n_users": 3}, "users": {"distance_m": {"low": 50, "high": 150}},
                              "provisioning_agent": {"name": "static", "params": {"n_images": 4}}}, 24),
    "many users (40, Poisson, 2 MASPs)": ({
        "name": "many", "arrivals": {"process": "poisson", "n_users": 40, "rate_per_s": 0.2},
        "users": {"distance_m": {"low": 40, "high": 160}},
        "masps": [{"name": "a", "gpus": 2, "max_users_per_epoch": 3, "position_m": [0, 60]},
                  {"name": "b", "gpus": 2, "max_users_per_epoch": 3, "position_m": [0, -60]}],
        "provisioning_agent": {"name": "static", "params": {"n_images": 3}}}, 6),
    "poor channel (150-220 m, m = 1)": ({
        "name": "poor", "arrivals": {"n_users": 3}, "users": {"distance_m": {"low": 150, "high": 220}},
        "channel": {"nakagami_m": 1.0}, "provisioning_agent": {"name": "static", "params": {"n_images": 4}}}, 24),
}


def _summaries(scenario: Scenario, delivery: str, seeds: Sequence[int]) -> pd.DataFrame:
    moded = scenario.model_copy(update={"channel": scenario.channel.model_copy(update={"delivery": delivery})})
    return pd.DataFrame([run_summary(moded, s) for s in seeds])


def agreement(cases: dict[str, tuple[Scenario, Sequence[int]]], metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """One row per case and metric: both modes' means with 95% CIs, the difference, Welch's p and Holm's p."""
    rows = []
    for case, (scenario, seeds) in cases.items():
        by_mode = {mode: _summaries(scenario, mode, seeds) for mode in ("bytes", "statistical")}
        for metric in metrics:
            a = by_mode["bytes"][metric].to_numpy(float)
            b = by_mode["statistical"][metric].to_numpy(float)
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            same = len(a) > 1 and len(b) > 1 and np.ptp(np.concatenate([a, b])) == 0
            p = 1.0 if same else float(stats.ttest_ind(a, b, equal_var=False).pvalue)
            rows.append({"case": case, "metric": metric, "seeds": len(seeds),
                         **{f"bytes_{k}": v for k, v in zip(("mean", "low", "high"), mean_ci(a))},
                         **{f"statistical_{k}": v for k, v in zip(("mean", "low", "high"), mean_ci(b))},
                         "difference": float(np.mean(a) - np.mean(b)), "p": p})
    table = pd.DataFrame(rows)
    table["p_holm"] = holm_adjust(table["p"].to_numpy())
    return table


def run_summary(scenario: Scenario, seed: int) -> dict[str, Any]:
    """The summary of one replication of ``scenario`` (a task for :func:`sim.executors.run_tasks`)."""
    return World(scenario, seed=seed).run().summary


def paired_agreement(base: Scenario, variant: Scenario, seeds: Sequence[int], metrics: Sequence[str] = METRICS,
                     executor: str | None = None, workers: int | None = None) -> pd.DataFrame:
    """One row per metric: ``base`` and ``variant`` run on the same ``seeds`` (same streams), both means with 95%
    CIs, the paired difference (variant - base) with its 95% CI, the paired t-test's p and Holm's p across the
    metrics. The runs go to ``executor`` (:func:`sim.executors.run_tasks`)."""
    seeds = [int(s) for s in seeds]
    summaries = run_tasks(run_summary, [(sc, s) for sc in (base, variant) for s in seeds], executor=executor,
                          workers=workers)
    by = {"base": pd.DataFrame(summaries[:len(seeds)]), "variant": pd.DataFrame(summaries[len(seeds):])}
    rows = []
    for metric in metrics:
        a, b = by["base"][metric].to_numpy(float), by["variant"][metric].to_numpy(float)
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
        rows.append({"metric": metric, "seeds": int(ok.sum()),
                     **{f"base_{k}": v for k, v in zip(("mean", "low", "high"), mean_ci(a))},
                     **{f"variant_{k}": v for k, v in zip(("mean", "low", "high"), mean_ci(b))},
                     **{f"difference_{k}": v for k, v in zip(("mean", "low", "high"), paired_difference(b, a))},
                     "p": paired_t_test(b, a)})
    table = pd.DataFrame(rows)
    table["p_holm"] = holm_adjust(table["p"].to_numpy())
    return table


def reference_cases(scale: float = 1.0) -> dict[str, tuple[Scenario, list[int]]]:
    """:data:`CASES` as scenarios, with ``scale`` times their seeds (at least 3)."""
    return {name: (parse_scenario(data, source=name), list(range(max(3, int(round(seeds * scale))))))
            for name, (data, seeds) in CASES.items()}


__all__ = ["CASES", "METRICS", "agreement", "paired_agreement", "reference_cases", "run_summary"]
