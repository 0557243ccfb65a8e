"""Figs. 12 and 13 of the D3PG paper measured in the SimPy world: service rounds, single-round success, resources.

For every prompt policy, user threshold ``t`` and images per round ``N``, one
world run (:func:`run_cell`) serves a batch of users whose prompts are drawn
from a given prompt file (the held-out prompts), all with threshold ``t``,
under static provisioning with ``N`` images per round and an equal power split.
From the users and the trace:

* **single-round success**: the share of users satisfied by their first round
  (the world's ``single_round_success``), with a Wilson 95% interval;
* **rounds**: the mean number of service rounds per user (censored at
  ``service.max_rounds``) and the share served within them;
* **the paper's fitted-normal method** (:func:`fitted_normal_rounds`): fit a
  normal to the first-round received scores of single images of a policy, take
  ``p = P(score >= t)``, the single-round success ``1 - (1 - p)^N`` and the
  rounds needed for success with 90% confidence ``ceil(ln 0.1 / (N ln(1 - p)))``;
* **resources per image** (:func:`resources_per_image`, Fig. 13): latency
  (queueing + generation + transmission), bandwidth occupancy (``B x``
  transmission time), transmit energy (``P x`` transmission time), GPU memory
  held (``generator.gpu_memory_gib x`` generation time) and fee (eq. 24 per
  image, ``c_zeta + P``); per served user they are multiplied by the images it
  took (re-generation included).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from sim.config import Range, Scenario
from sim.world.records import UserRecord, records_frame, trace_frame

#: The paper's confidence for "rounds needed" with the fitted normal.
ROUNDS_CONFIDENCE = 0.90


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    >>> [round(x, 3) for x in wilson_interval(3, 55)]
    [0.019, 0.149]
    """
    if trials <= 0:
        return math.nan, math.nan
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def ratio_interval(s1: int, n1: int, s0: int, n0: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Ratio of two independent proportions ``(s1/n1) / (s0/n0)`` with the Katz log interval.

    A zero count gets the usual 0.5 continuity correction in the interval (not in the ratio).

    >>> [round(x, 2) for x in ratio_interval(9, 55, 3, 55)]
    [3.0, 0.86, 10.49]
    """
    if min(n1, n0) <= 0:
        return math.nan, math.nan, math.nan
    ratio = (s1 / n1) / (s0 / n0) if s0 > 0 else math.inf
    a, c = (s1, s0) if s1 > 0 and s0 > 0 else (s1 + 0.5, s0 + 0.5)
    se = math.sqrt(max(1 / a - 1 / n1 + 1 / c - 1 / n0, 0.0))
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    centre = math.log((a / n1) / (c / n0))
    return ratio, math.exp(centre - z * se), math.exp(centre + z * se)


def fitted_normal_rounds(scores: Sequence[float], threshold: float, n_images: int,
                         confidence: float = ROUNDS_CONFIDENCE) -> dict[str, float]:
    """The paper's method: a normal fitted to single-image scores -> success per round and rounds needed.

    >>> out = fitted_normal_rounds([7.0, 7.5, 8.0, 8.5, 9.0], 8.0, 2)
    >>> round(out["p_image"], 3), round(out["p_round"], 3), out["rounds"]
    (0.5, 0.75, 2)
    """
    x = np.asarray(scores, dtype=float)
    mu, sd = float(x.mean()), float(x.std(ddof=1))
    p = float(stats.norm.sf(threshold, loc=mu, scale=sd)) if sd > 0 else float(mu >= threshold)
    p_round = 1.0 - (1.0 - p) ** int(n_images)
    if p_round >= 1.0:
        rounds = 1
    elif p_round <= 0.0:
        rounds = math.inf
    else:
        rounds = max(1, math.ceil(math.log(1.0 - confidence) / math.log(1.0 - p_round)))
    return {"mean": mu, "sd": sd, "p_image": p, "p_round": p_round, "rounds": rounds}


def cell_scenario(scenario: Scenario, prompt_file: Path, threshold: float, n_images: int, prompt_agent: str,
                  prompt_params: dict[str, Any], n_users: int) -> Scenario:
    """``scenario`` with users from ``prompt_file`` at one threshold, static ``n_images`` and a prompt policy."""
    users = scenario.users.model_copy(update={"prompt_set": str(prompt_file), "prompts": [], "thresholds": [],
                                              "threshold": Range(low=threshold, high=threshold)})
    return scenario.model_copy(update={
        "users": users,
        "arrivals": scenario.arrivals.model_copy(update={"process": "batch", "n_users": n_users}),
        "provisioning_agent": scenario.provisioning_agent.model_copy(update={"name": "static", "params": {"n_images": n_images}}),
        "prompt_agent": scenario.prompt_agent.model_copy(update={"name": prompt_agent, "params": dict(prompt_params)}),
    })


def run_cell(scenario: Scenario, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One world run: its users and its image records."""
    from sim.world.simulation import World

    result = World(scenario, seed=seed).run()
    users = records_frame(result.users, UserRecord)
    trace = trace_frame(result.images, result.rounds)
    return users, trace[trace["record"] == "image"].reset_index(drop=True)


def resources_per_image(images: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """Fig. 13's resources of every image in a trace (one row per image)."""
    bandwidth = scenario.channel.bandwidth_hz
    return pd.DataFrame({
        "latency_s": images["t_received_s"] - images["t_queued_s"],
        "generation_s": images["generation_time_s"],
        "transmission_s": images["transmission_time_s"],
        "bandwidth_mhz_s": bandwidth * images["transmission_time_s"] / 1e6,
        "energy_j": images["power_w"] * images["transmission_time_s"],
        "gpu_gib_s": scenario.generator.gpu_memory_gib * images["generation_time_s"],
        "fee": scenario.qoe.cost_per_image + images["power_w"],
    })


def summarise_cell(users: pd.DataFrame, images: pd.DataFrame) -> dict[str, float]:
    """Success, rounds and images of one cell."""
    n = len(users)
    first = int(users["single_round_success"].sum())
    low, high = wilson_interval(first, n)
    return {
        "users": n,
        "single_round_successes": first,
        "single_round_success": first / n if n else math.nan,
        "success_low": low,
        "success_high": high,
        "served_share": float(users["satisfied"].mean()) if n else math.nan,
        "mean_rounds": float(users["rounds"].mean()) if n else math.nan,
        "mean_rounds_served": float(users.loc[users["satisfied"], "rounds"].mean()) if users["satisfied"].any() else math.nan,
        "images_per_user": float(users["images"].mean()) if n else math.nan,
        "first_round_image_scores": images.loc[images["round_index"] == 0, "received_score"].tolist(),
    }


__all__ = [
    "ROUNDS_CONFIDENCE", "cell_scenario", "fitted_normal_rounds", "ratio_interval", "resources_per_image",
    "run_cell", "summarise_cell", "wilson_interval",
]
