"""Evaluating prompt policies on ``sim/Prompt-v0``: every policy on the same prompts and seeds.

:func:`evaluate_prompt_policy` / :func:`evaluate_policies` run any policy --
:func:`baseline_policy` (``raw`` = 0, ``random``, ``empirical`` = 6, ``expert``,
``model``), :func:`checkpoint_policy` (a trained one) or any callable
``(obs, context) -> strategy`` -- on a list of prompts, on the same seeds for
every policy (common random numbers), and report the first round's mean
received score, single-round success ``P(score >= threshold)`` and agreement
with the expert's action, each with a 95% CI over episodes, plus rounds and
served share over whole episodes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from sim.config import Scenario
from sim.model.quality import N_STRATEGIES, prompt_complexity
from sim.rl.checkpoints import load_prompt_checkpoint
from sim.rl.prompt_env import PromptEnv, make_env
from sim.rl.prompt_expert import ModelExpert
from sim.rl.prompt_features import ObservationSpec, prompt_observation
from sim.stats import mean_ci

#: Seeds of evaluation episodes start here (as in :mod:`sim.rl.evaluation`).
EVAL_SEED_OFFSET = 1_000_000

#: A prompt policy: ``(observation vector, env context) -> strategy``. The context is the
#: env's ``info`` for the decision (``prompt``, ``power_w``, ``history``, ``threshold``, ...).
PromptPolicy = Callable[[np.ndarray, Mapping[str, Any]], int]


# ---------------------------------------------------------------------------
# policies


def constant_policy(strategy: int) -> PromptPolicy:
    s = int(strategy)
    if not 0 <= s < N_STRATEGIES:
        raise ValueError(f"strategy must be in 0..{N_STRATEGIES - 1}, got {strategy}")
    return lambda obs, ctx: s


def random_policy(seed: int = 0) -> PromptPolicy:
    rng = np.random.default_rng(seed)
    return lambda obs, ctx: int(rng.integers(N_STRATEGIES))


def expert_policy(expert) -> PromptPolicy:
    return lambda obs, ctx: expert.action(ctx["prompt"], ctx["power_w"])


def model_policy(model, deterministic: bool = True) -> PromptPolicy:
    """A policy from anything with SB3's ``predict(obs, deterministic=...)`` (PPO, :class:`sim.rl.algos.gail.GAIL`)."""

    def act(obs, ctx):
        action, _ = model.predict(obs, deterministic=deterministic)
        return int(np.asarray(action).item())

    return act


def baseline_policy(name: str, seed: int = 0, expert=None, quality=None) -> PromptPolicy:
    """``raw`` (0), ``random``, ``empirical`` (6), ``expert`` (needs ``expert``), ``model`` (needs ``quality``)."""
    if name == "raw":
        return constant_policy(0)
    if name == "empirical":
        return constant_policy(6)
    if name == "random":
        return random_policy(seed)
    if name == "expert":
        if expert is None:
            raise ValueError("the expert policy needs an expert")
        return expert_policy(expert)
    if name == "model":
        if quality is None:
            raise ValueError("the model-optimal policy needs a quality model")
        return expert_policy(ModelExpert(quality))
    raise ValueError(f"unknown baseline {name!r}; known: raw, random, empirical, expert, model")


def checkpoint_policy(directory: str | Path, deterministic: bool = True) -> PromptPolicy:
    """The policy of a checkpoint of :func:`sim.rl.prompt_training.train_prompt_policy`, acting on the env's observation."""
    meta, model = load_prompt_checkpoint(directory)
    spec = ObservationSpec.from_dict(meta["observation"])

    def act(obs, ctx):
        vector = prompt_observation(spec, ctx["prompt"], ctx["power_w"], ctx.get("history", ()))
        action, _ = model.predict(vector, deterministic=deterministic)
        return int(np.asarray(action).item())

    return act


# ---------------------------------------------------------------------------
# evaluation


@dataclass(frozen=True)
class PolicyEvaluation:
    """One policy on a list of prompts: per-episode rows and the summary with 95% CIs."""

    name: str
    episodes: pd.DataFrame
    summary: dict[str, float] = field(default_factory=dict)


def _summarise(name: str, ep: pd.DataFrame) -> dict[str, float]:
    out: dict[str, float] = {"policy": name, "episodes": len(ep), "prompts": int(ep["prompt"].nunique())}
    for col, label in (("score", "score"), ("success", "success"), ("agree", "agreement"),
                       ("model_agree", "model_agreement"), ("rounds", "rounds"), ("served", "served")):
        m, lo, hi = mean_ci(ep[col].to_numpy(float))
        out[label], out[f"{label}_ci_low"], out[f"{label}_ci_high"] = m, lo, hi
    shares = ep["action"].value_counts(normalize=True)
    out["action_shares"] = json.dumps({int(s): round(float(v), 4) for s, v in sorted(shares.items())})
    return out


def evaluate_prompt_policy(
    policy: PromptPolicy,
    scenario: Scenario,
    prompts: Sequence[str],
    episodes_per_prompt: int = 4,
    seed: int = 0,
    expert=None,
    name: str = "policy",
    env: PromptEnv | None = None,
    **env_kwargs: Any,
) -> PolicyEvaluation:
    """Run ``policy`` for ``episodes_per_prompt`` whole episodes per prompt and summarise.

    Episode ``e`` of prompt ``j`` is reset with seed ``EVAL_SEED_OFFSET + seed *
    100000 + j * 1000 + e`` (the same for every policy, so differences are
    paired). Per episode: the first round's strategy, received ``score``,
    ``success`` (score >= threshold), ``agree`` (strategy equals ``expert``'s at
    that prompt and power; NaN where the expert does not cover the prompt),
    ``model_agree`` (equals :class:`ModelExpert`'s), and over the whole episode
    ``rounds`` and ``served``. ``env`` (or ``env_kwargs``) sets the observation
    the policy sees; the prompts come from ``prompts`` through ``reset`` options.
    """
    if not prompts:
        raise ValueError("no prompts to evaluate on")
    env = env if env is not None else make_env(scenario, list(prompts), **env_kwargs)
    model_expert = ModelExpert(env.quality, env.n_images)
    rows = []
    for j, prompt in enumerate(prompts):
        covered = expert is not None and expert.covers(prompt)
        for e in range(int(episodes_per_prompt)):
            root = EVAL_SEED_OFFSET + seed * 100_000 + j * 1000 + e
            obs, info = env.reset(seed=root, options={"prompt": prompt})
            first: dict[str, Any] = {}
            done = False
            while not done:
                a = int(policy(obs, info))
                if not first:
                    expert_a = expert.action(prompt, info["power_w"]) if covered else -1
                    model_a = model_expert.action(prompt, info["power_w"])
                    first = {"action": a, "power_w": info["power_w"], "expert_action": expert_a,
                             "agree": float(a == expert_a) if covered else math.nan,
                             "model_action": model_a, "model_agree": float(a == model_a)}
                obs, _, terminated, truncated, info = env.step(a)
                if "score" not in first:
                    first["score"] = info["received_score"]
                    first["success"] = float(info["success"])
                done = terminated or truncated
            rows.append({"policy": name, "prompt": prompt, "complexity": prompt_complexity(prompt), "seed": root,
                         "threshold": info["threshold"], **first, "rounds": info["round"],
                         "served": float(info["satisfied"]), "best_score": info["best_score"]})
    episodes = pd.DataFrame(rows)
    return PolicyEvaluation(name, episodes, _summarise(name, episodes))


def evaluate_policies(
    policies: Mapping[str, PromptPolicy],
    scenario: Scenario,
    prompts: Sequence[str],
    episodes_per_prompt: int = 4,
    seed: int = 0,
    expert=None,
    **env_kwargs: Any,
) -> pd.DataFrame:
    """:func:`evaluate_prompt_policy` for each named policy on the same seeds; one summary row per policy.

    Columns: ``policy``, ``episodes``, ``prompts``, then ``score``, ``success``,
    ``agreement``, ``model_agreement``, ``rounds``, ``served``, each with
    ``_ci_low`` / ``_ci_high`` (95% Student-t over episodes), and
    ``action_shares`` (JSON: strategy -> share of first-round choices).
    """
    env = make_env(scenario, list(prompts), **env_kwargs)
    rows = [
        evaluate_prompt_policy(p, scenario, prompts, episodes_per_prompt, seed, expert, name, env=env).summary
        for name, p in policies.items()
    ]
    return pd.DataFrame(rows)


__all__ = [
    "EVAL_SEED_OFFSET",
    "PolicyEvaluation",
    "PromptPolicy",
    "baseline_policy",
    "checkpoint_policy",
    "constant_policy",
    "evaluate_policies",
    "evaluate_prompt_policy",
    "expert_policy",
    "model_policy",
    "random_policy",
]
