"""Evaluating provisioning policies on ``sim/Provisioning-v0``: every policy on the same held-out episodes.

A policy is a ``decide(env, observation) -> Provision`` callable:
:func:`model_decider` wraps a learner (its deterministic action, mapped as in
training), :func:`agent_decider` a world agent (static, random, the oracle),
which decides from ``env.current_observation`` in the world's terms.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from sim.config import Scenario
from sim.decisions import Provision
from sim.rl.features import batch_provision
from sim.rl.provisioning_env import ProvisioningEnv
from sim.rl.world_env import make_training_env
from sim.stats import mean_ci

#: Seeds of evaluation episodes start here; training episodes use the run's seed stream.
EVAL_SEED_OFFSET = 1_000_000

#: Per-episode columns of :func:`evaluate_policy`.
EVAL_COLUMNS = ("episode", "utility", "qoe", "satisfied", "n_images", "power_share_max", "penalty")


def evaluate_policy(
    decide: Callable[[ProvisioningEnv, np.ndarray], Provision], scenario: Scenario, episodes: int, seed: int
) -> pd.DataFrame:
    """Per-episode means of a policy on the held-out evaluation episodes of ``seed``.

    ``decide(env, observation)`` returns the :class:`~sim.decisions.Provision` for the
    env's current users (``env.current_observation`` has them in the world's terms).
    Episode ``i`` is ``env.reset(seed=EVAL_SEED_OFFSET + 1000 seed + i)``: every
    policy, learned or not, meets the same users and the same draws. The
    environment is the scenario's ``training.env``. Columns (:data:`EVAL_COLUMNS`):
    ``utility`` (``epoch``: utility per decision, eq. 22a; ``world``: the run's
    mean utility per user over each user's whole stay, the episode's return),
    QoE per user, share of users satisfied, images per user (per decision in
    ``epoch``, per user in ``world``), the largest user's share of the power,
    penalty per decision (``epoch`` only).
    """
    env = make_training_env(scenario)
    rows = []
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED_OFFSET + seed * 1000 + i)
        steps, shares, done, total = [], [], False, 0.0
        while not done:
            provision = decide(env, obs)
            power = np.asarray(provision.power_w, dtype=float)
            shares.append(float(power.max() / max(power.sum(), 1e-12)))
            obs, reward, terminated, truncated, info = env.step_provision(provision)
            total += reward
            if isinstance(env, ProvisioningEnv):
                u = info["users"]
                steps.append((reward, float(np.mean(u["qoe"])), float(np.mean(u["satisfied"])),
                              float(np.mean(u["n_images"])), info["penalty"]))
            done = terminated or truncated
        if isinstance(env, ProvisioningEnv):
            r, q, sat, n, pen = np.mean(steps, axis=0)
            rows.append((i, r, q, sat, n, float(np.mean(shares)), pen))
        else:  # a world run: its objective (the return) and summary
            s = env.world.result().summary
            rows.append((i, total, s["mean_qoe"], s["served_users"] / max(s["users"], 1), s["mean_images"],
                         float(np.mean(shares)), np.nan))
    return pd.DataFrame(rows, columns=list(EVAL_COLUMNS))


def model_decider(model, scenario: Scenario) -> Callable[[ProvisioningEnv, np.ndarray], Provision]:
    """:func:`evaluate_policy`'s ``decide`` for a learner: its deterministic action, mapped as in training."""

    def decide(env, obs: np.ndarray) -> Provision:
        action, _ = model.predict(obs, deterministic=True)
        n_users = env.current_observation.n_users
        return batch_provision(action, n_users, env.n_max, env.p_total_w, env.action_mapping)

    return decide


def agent_decider(agent) -> Callable[[ProvisioningEnv, np.ndarray], Provision]:
    """:func:`evaluate_policy`'s ``decide`` for a world provisioning agent (static, random, oracle...)."""
    return lambda env, obs: agent.decide(env.current_observation)


def evaluate(model, scenario: Scenario, episodes: int, seed: int) -> tuple[float, float, float]:
    """Mean utility per decision of the deterministic policy over held-out episodes, with its 95% CI."""
    frame = evaluate_policy(model_decider(model, scenario), scenario, episodes, seed)
    return mean_ci(frame["utility"].to_numpy())


__all__ = ["EVAL_COLUMNS", "EVAL_SEED_OFFSET", "agent_decider", "evaluate", "evaluate_policy", "model_decider"]
