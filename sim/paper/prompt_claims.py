"""The prompting study's claims tested in the world: every training seed, distinct users per cell, Holm, magnitude.

The paper's prompt-engineering claims are single-round success ratios of one image: IRL over raw prompts
(6.3x) and over the empirical strategy, always strategy 6 (2.1x), from 3/55 raw and 9/55 always-6 (IRL
about 19/55). :func:`claim_runs` measures them in the SimPy world:

* **every training seed** ``s`` of the learners (GAIL on D's expert, GAIL on the model optimum, PPO) runs
  its own policy, beside raw, always-6 and the text-known optimum (the ``optimum`` prompt agent);
* **distinct users per cell**: for seed ``s`` and threshold ``t_j`` the world's seed is
  :func:`world_seed` ``(s, j)``, so no two (seed, threshold) cells share users, while every policy of a
  cell meets the same users (paired: common random numbers);
* one round, one image per user (``service.max_rounds = 1``): single-round success is what is measured.

:func:`claims_table` gives each ratio with a 95% percentile interval from a bootstrap that resamples
whole training seeds (a seed's users share its policy: :func:`sim.stats.cluster_bootstrap_ratio`), its
bootstrap p-value of "no difference", Holm's correction across the whole table, a verdict on the
direction (Holm-adjusted) and one on the magnitude: whether the paper's value lies inside our interval.

:func:`model_bands` adds the quality model's own uncertainty: a parametric bootstrap over the strategy
model's fitted parameters (:func:`sim.model.quality_uncertainty.draw_models`) that keeps every user, its
threshold and the strategy its policy chose, and recomputes the chance that the image as generated meets
the threshold (``QualityModel.text_known_success``; the optimum re-optimised under each draw).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from sim.config import Scenario
from sim.executors import run_tasks
from sim.model.quality import N_STRATEGIES
from sim.paper import prompt_world as pw
from sim.paper.common import magnitude_verdict
from sim.stats import cluster_bootstrap_mean, cluster_bootstrap_ratio, holm_adjust

#: Policies of the claim runs, and the learners among them (trained per seed).
CLAIM_POLICIES = ("raw", "empirical", "optimum", "irl", "irl-model", "ppo")
LEARNED = ("irl", "irl-model", "ppo")
#: Ratios tested: (numerator, baseline) -> the paper's value (None: the paper reports none).
RATIOS: dict[tuple[str, str], float | None] = {
    ("irl", "raw"): 6.3, ("irl", "empirical"): 2.1,
    ("irl-model", "raw"): 6.3, ("irl-model", "empirical"): 2.1,
    ("ppo", "raw"): None, ("ppo", "empirical"): None,
    ("optimum", "raw"): None, ("optimum", "empirical"): None,
}
#: The paper's single-image success rates (per 55 prompts): raw, always 6, IRL (6.3 x 3/55).
PAPER_RATES = {"raw": 3 / 55, "empirical": 9 / 55, "irl": 6.3 * 3 / 55}


def world_seed(base_seed: int, training_seed: int, threshold_index: int) -> int:
    """The world seed of the cell (training seed, threshold): distinct for every cell.

    >>> len({world_seed(0, s, j) for s in range(10) for j in range(3)})
    30
    """
    return int(base_seed) + 1000 * (int(training_seed) + 1) + int(threshold_index)


def _claim_cell(scenario: Scenario, policy: str, params: dict[str, Any], threshold: float, users: int,
                prompt_file: Path, seed: int, training_seed: int, threshold_index: int) -> pd.DataFrame:
    import torch

    torch.set_num_threads(1)
    agent = "learned" if policy in LEARNED else policy  # raw, empirical, optimum: prompt agents of those names
    cell = pw.cell_scenario(scenario, prompt_file, threshold, 1, agent, params, users)
    cell = cell.model_copy(update={"service": cell.service.model_copy(update={"max_rounds": 1})})
    user_frame, images = pw.run_cell(cell, seed)
    strategy = images.loc[images["round_index"] == 0].groupby("user_id")["strategy"].first()
    return pd.DataFrame({
        "policy": policy, "training_seed": training_seed, "threshold_index": threshold_index,
        "threshold": threshold, "world_seed": seed, "user_id": user_frame["user_id"].to_numpy(),
        "prompt": user_frame["prompt"].to_numpy(), "strategy": user_frame["user_id"].map(strategy).to_numpy(),
        "success": user_frame["single_round_success"].astype(float).to_numpy(),
    })


def claim_runs(scenario: Scenario, seeds: Sequence[int], thresholds: Sequence[float], users: int,
               prompt_file: Path, checkpoint: Callable[[str, int], Path], jobs: int) -> pd.DataFrame:
    """Every (training seed, threshold, policy) cell (module docstring): one row per user and policy.

    ``checkpoint(name, seed)`` is the directory of learner ``name``'s checkpoint trained on ``seed``.
    """
    args = []
    for s in seeds:
        for j, t in enumerate(thresholds):
            for policy in CLAIM_POLICIES:
                params = {"checkpoint": str(checkpoint(policy, s))} if policy in LEARNED else {}
                args.append((scenario, policy, params, float(t), int(users), prompt_file,
                             world_seed(scenario.seed, s, j), int(s), j))
    return pd.concat(run_tasks(_claim_cell, args, workers=jobs), ignore_index=True)


def _paired(runs: pd.DataFrame, numerator: str, baseline: str) -> pd.DataFrame:
    keys = ["training_seed", "threshold_index", "user_id"]
    a = runs.loc[runs["policy"] == numerator, keys + ["success"]]
    b = runs.loc[runs["policy"] == baseline, keys + ["success"]]
    return a.merge(b, on=keys, suffixes=("_num", "_base"), validate="one_to_one")


def magnitude(low: float, high: float, paper: float | None, unit: str = "x") -> str:
    """:func:`sim.paper.common.magnitude_verdict`, empty where the paper reports no value."""
    return "" if paper is None or not np.isfinite(paper) else magnitude_verdict(low, high, paper, unit)


def claims_table(runs: pd.DataFrame, n_boot: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Each ratio of :data:`RATIOS`: estimate, interval and p-value clustered by training seed, Holm-adjusted p,
    and the verdicts on direction and on the paper's magnitude."""
    rows = []
    for (num, base), paper in RATIOS.items():
        pairs = _paired(runs, num, base)
        if pairs.empty:
            continue
        ratio, low, high, p = cluster_bootstrap_ratio(pairs["success_num"], pairs["success_base"],
                                                      pairs["training_seed"], n_boot=n_boot, seed=seed)
        rows.append({"numerator": num, "baseline": base, "paper": paper, "ratio": ratio, "low": low, "high": high,
                     "p": p, "users": len(pairs), "seeds": pairs["training_seed"].nunique(),
                     "successes": int(pairs["success_num"].sum()), "baseline_successes": int(pairs["success_base"].sum())})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_holm"] = holm_adjust(table["p"].to_numpy())
    table["direction"] = [
        ("higher" if r > 1 else "lower") + " (Holm p < 0.05)" if ph < 0.05 else "no significant difference (Holm)"
        for r, ph in zip(table["ratio"], table["p_holm"])]
    table["magnitude"] = [magnitude(lo, hi, pv) for lo, hi, pv in zip(table["low"], table["high"], table["paper"])]
    return table


def success_rates(runs: pd.DataFrame, n_boot: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Single-round success per policy with its interval clustered by training seed, per 55 as the paper counts,
    and whether the paper's rate (raw 3/55, always-6 9/55, IRL ~19/55) lies inside it."""
    rows = []
    for policy in CLAIM_POLICIES:
        g = runs[runs["policy"] == policy]
        if g.empty:
            continue
        m, lo, hi = cluster_bootstrap_mean(g["success"], g["training_seed"], n_boot=n_boot, seed=seed)
        paper = PAPER_RATES.get("irl" if policy.startswith("irl") else policy)
        rows.append({"policy": policy, "success": m, "low": max(0.0, lo), "high": hi, "users": len(g),
                     "paper": paper, "magnitude": magnitude(55 * lo, 55 * hi, None if paper is None else 55 * paper,
                                                            "/55")})
    return pd.DataFrame(rows)


def model_bands(runs: pd.DataFrame, base_quality, n_draws: int = 200, seed: int = 0,
                confidence: float = 0.95) -> pd.DataFrame:
    """The ratios of :data:`RATIOS` under quality models drawn from the strategy model's intervals (module
    docstring): the model-expected ratio under the fitted model and its percentile band over the draws."""
    from sim.model.quality_uncertainty import draw_models

    models = [base_quality] + draw_models(base_quality, n_draws, seed=seed)
    cells = runs[["prompt", "threshold"]].drop_duplicates().reset_index(drop=True)
    thresholds = sorted(cells["threshold"].unique())
    prompts = sorted(cells["prompt"].unique())
    p_index = {p: i for i, p in enumerate(prompts)}
    t_index = {t: j for j, t in enumerate(thresholds)}
    pi = runs["prompt"].map(p_index).to_numpy()
    ti = runs["threshold"].map(t_index).to_numpy()
    strategy = runs["strategy"].fillna(0).astype(int).to_numpy()
    optimum = (runs["policy"] == "optimum").to_numpy()
    masks = {policy: (runs["policy"] == policy).to_numpy() for policy in CLAIM_POLICIES}
    ratios = {key: [] for key in RATIOS}
    for qm in models:
        # chance (as generated) of every prompt, strategy and threshold: (prompts, strategies, thresholds)
        chance = np.array([[qm.text_known_success(p, s, thresholds) for s in range(N_STRATEGIES)] for p in prompts])
        p_user = np.where(optimum, chance[pi, :, ti].max(axis=1), chance[pi, strategy, ti])
        means = {policy: float(p_user[m].mean()) if m.any() else np.nan for policy, m in masks.items()}
        for num, base in RATIOS:
            ratios[(num, base)].append(means[num] / means[base] if means[base] > 0 else np.nan)
    alpha = (1.0 - confidence) / 2
    rows = []
    for (num, base), values in ratios.items():
        v = np.asarray(values, dtype=float)
        if not np.isfinite(v[0]):
            continue
        draws = v[1:][np.isfinite(v[1:])]
        rows.append({"numerator": num, "baseline": base, "model_ratio": v[0],
                     "model_low": float(np.quantile(draws, alpha, method="inverted_cdf")),
                     "model_high": float(np.quantile(draws, 1 - alpha, method="inverted_cdf")),
                     "draws": len(draws)})
    return pd.DataFrame(rows)


__all__ = ["CLAIM_POLICIES", "LEARNED", "PAPER_RATES", "RATIOS", "claim_runs", "claims_table", "magnitude",
           "model_bands", "success_rates", "world_seed"]
