"""The prompt agent's expert and its prompts: the train / held-out split, the expert from D, expert rollouts.

* **Split.** :func:`split_prompts` divides a prompt set into demonstration
  (training) prompts and held-out prompts, stratified by complexity and fixed
  by a seed.
* **Expert.** :func:`expert_table` takes, per demonstration prompt and power
  level of a demonstration dataset D (:mod:`sim.dataset.demonstrations`), the strategy
  with the best mean received score over D's seeds; :class:`DemoExpert` answers
  from that table (nearest power level, in log power), :class:`ModelExpert`
  is the quality model's noise-free optimum (``argmax_s`` of the expected best
  received score, which does not depend on the power: the damage multiplies
  every strategy's score alike). :func:`expert_pairs` rolls the expert out in
  :class:`~sim.rl.prompt_env.PromptEnv` and returns its (observation, action)
  pairs in the env's observation format, later rounds (with a history) included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sim.config import Scenario
from sim.model.quality import N_STRATEGIES, prompt_complexity
from sim.prompting.prompts import load_prompts
from sim.rl.prompt_env import make_env

#: Seeds of expert rollouts start here (apart from training and evaluation episodes).
EXPERT_SEED_OFFSET = 2_000_000


class PromptTrainingError(ValueError):
    """Bad input to prompt-policy training (unknown algorithm, bad demonstrations, missing checkpoint)."""


def prompt_key(prompt: str) -> str:
    """A prompt's identity: lower case, whitespace collapsed."""
    return " ".join(str(prompt).lower().split())


# ---------------------------------------------------------------------------
# prompts


@dataclass(frozen=True)
class PromptSplit:
    """Demonstration (training) prompts and held-out prompts."""

    train: tuple[str, ...]
    held_out: tuple[str, ...]


def scenario_prompts(scenario: Scenario) -> list[str]:
    """The texts of the scenario's prompt set (``users.prompt_set``)."""
    path = None if scenario.users.prompt_set == "default" else scenario.users.prompt_set
    return [p.text for p in load_prompts(path)]


def split_prompts(prompts: Sequence[str], n_train: int = 32, seed: int = 0) -> PromptSplit:
    """Split ``prompts`` into ``n_train`` training prompts and the rest, stratified by complexity.

    The prompts are ordered by (complexity, text) and cut into ``n_train``
    consecutive strata of (nearly) equal size; one prompt is drawn from each
    with ``numpy.random.default_rng(seed)``. Deterministic in ``seed``; both
    parts keep the input order.

    >>> ps = [p.text for p in load_prompts()]
    >>> s = split_prompts(ps, 32, seed=0)
    >>> len(s.train), len(s.held_out), set(s.train).isdisjoint(s.held_out)
    (32, 96, True)
    >>> s == split_prompts(ps, 32, seed=0), s == split_prompts(ps, 32, seed=1)
    (True, False)
    """
    texts = list(dict.fromkeys(str(p) for p in prompts))
    if isinstance(n_train, bool) or int(n_train) != n_train or not 1 <= n_train < len(texts):
        raise PromptTrainingError(f"n_train must be an integer in 1..{len(texts) - 1}, got {n_train!r}")
    order = sorted(range(len(texts)), key=lambda i: (prompt_complexity(texts[i]), texts[i]))
    rng = np.random.default_rng(int(seed))
    chosen = {order[int(rng.choice(stratum))] for stratum in np.array_split(np.arange(len(order)), int(n_train))}
    return PromptSplit(
        tuple(t for i, t in enumerate(texts) if i in chosen), tuple(t for i, t in enumerate(texts) if i not in chosen)
    )


# ---------------------------------------------------------------------------
# the expert


def load_demonstrations(demo: str | Path | pd.DataFrame) -> pd.DataFrame:
    """A demonstration dataset D (a Parquet path or a frame) with the columns the expert needs."""
    if isinstance(demo, pd.DataFrame):
        frame = demo
    else:
        path = Path(demo)
        if not path.is_file():
            raise PromptTrainingError(f"{path}: no demonstration dataset there (build one with python -m sim demo-dataset)")
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # noqa: BLE001 - one clear line
            raise PromptTrainingError(f"{path}: not a readable Parquet file ({type(err).__name__})") from None
    missing = [c for c in ("prompt", "strategy", "power_w", "received_score") if c not in frame.columns]
    if missing:
        raise PromptTrainingError(f"demonstration dataset lacks column(s) {', '.join(missing)}")
    if frame.empty:
        raise PromptTrainingError("demonstration dataset is empty")
    return frame


def expert_table(
    demo: str | Path | pd.DataFrame, score: str = "received_score", pool_powers: bool = False
) -> pd.DataFrame:
    """The expert's strategy per (prompt, power level) of D: the best mean ``score`` over D's seeds.

    One row per (prompt, power_w): ``prompt``, ``complexity``, ``power_w``,
    ``strategy`` (ties go to the lower id), ``mean_score`` (its mean),
    ``margin`` (over the second best strategy), ``n`` (rows averaged).
    ``pool_powers=True`` averages over all power levels too, so every power
    level of a prompt gets the same strategy (less noise: the damage does not
    depend on the strategy). ``score="generation_score"`` ranks the intact images.

    >>> frame = pd.DataFrame({"prompt": ["a cat"] * 4, "power_w": [0.1] * 4,
    ...                       "strategy": [0, 0, 6, 6], "received_score": [5.0, 7.0, 6.5, 6.0]})
    >>> expert_table(frame)[["strategy", "mean_score", "margin", "n"]].values.tolist()
    [[6.0, 6.25, 0.25, 2.0]]
    """
    frame = load_demonstrations(demo)
    if score not in frame.columns:
        raise PromptTrainingError(f"demonstration dataset lacks column {score!r}")
    frame = frame.assign(prompt=frame["prompt"].astype(str), strategy=frame["strategy"].astype(int),
                         power_w=frame["power_w"].astype(float))
    keys = ["prompt", "strategy"] if pool_powers else ["prompt", "power_w", "strategy"]
    means = frame.groupby(keys, sort=True)[score].agg(["mean", "size"]).reset_index()
    rows = []
    for group, g in means.groupby(keys[:-1], sort=True):
        g = g.sort_values(["mean", "strategy"], ascending=[False, True], kind="stable")
        best = g.iloc[0]
        second = float(g["mean"].iloc[1]) if len(g) > 1 else math.nan
        prompt = group[0]
        powers = sorted(frame.loc[frame["prompt"] == prompt, "power_w"].unique()) if pool_powers else [group[1]]
        for power in powers:
            rows.append({"prompt": prompt, "complexity": float(prompt_complexity(prompt)), "power_w": float(power),
                         "strategy": int(best["strategy"]), "mean_score": float(best["mean"]),
                         "margin": float(best["mean"]) - second, "n": int(best["size"])})
    return pd.DataFrame(rows)


class DemoExpert:
    """The expert of D: per demonstration prompt and power level, the best-mean strategy.

    :meth:`action` answers for a prompt of D at any power, with the nearest
    power level of D in log power. A prompt outside D raises ``KeyError``
    (check :meth:`covers`).
    """

    def __init__(self, table: pd.DataFrame):
        if table.empty:
            raise PromptTrainingError("empty expert table")
        self.table = table.reset_index(drop=True)
        self._by_prompt: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for prompt, g in self.table.groupby("prompt", sort=False):
            g = g.sort_values("power_w")
            self._by_prompt[prompt_key(prompt)] = (np.log(g["power_w"].to_numpy(float)), g["strategy"].to_numpy(int))

    @classmethod
    def from_demonstrations(
        cls, demo: str | Path | pd.DataFrame, score: str = "received_score", pool_powers: bool = False
    ) -> "DemoExpert":
        return cls(expert_table(demo, score, pool_powers))

    @property
    def prompts(self) -> list[str]:
        return list(dict.fromkeys(self.table["prompt"]))

    def covers(self, prompt: str) -> bool:
        return prompt_key(prompt) in self._by_prompt

    def action(self, prompt: str, power_w: float) -> int:
        log_p, strategies = self._by_prompt[prompt_key(prompt)]
        return int(strategies[int(np.argmin(np.abs(log_p - math.log(max(float(power_w), 1e-12)))))])

    def strategy_shares(self) -> dict[int, float]:
        """Share of (prompt, power) entries per expert strategy."""
        counts = self.table["strategy"].value_counts(normalize=True)
        return {s: float(counts.get(s, 0.0)) for s in range(N_STRATEGIES)}


class ModelExpert:
    """The quality model's optimum: ``argmax_s`` expected best received score of ``n_images`` images.

    The damage factor is the same for every strategy, and the prompt's own offset shifts every strategy
    alike, so the choice depends on the prompt's complexity and, in a model with per-prompt strategy effects
    (the ``ratings`` profile), on the part of them its words fix (``QualityModel.text_effect_z``): what a
    policy reading the text can know. Not on the power.
    """

    def __init__(self, quality, n_images: int = 1):
        self.quality = quality
        self.n_images = int(n_images)
        self._per_prompt = bool(np.any(getattr(quality, "aspect_prompt_sd_z", np.zeros(1)) > 0))

    @lru_cache(maxsize=4096)
    def _best(self, complexity: float) -> int:
        means = self.quality.expected_best_of_n(complexity, np.arange(N_STRATEGIES), self.n_images)
        return int(np.argmax(means))

    @lru_cache(maxsize=65536)
    def _best_for(self, prompt: str) -> int:
        q = self.quality
        offsets = np.array([q.scale * q.text_effect_z(prompt, s) for s in range(N_STRATEGIES)])
        means = q.expected_best_of_n(float(prompt_complexity(prompt)), np.arange(N_STRATEGIES), self.n_images,
                                     offset=offsets)
        return int(np.argmax(means))

    def covers(self, prompt: str) -> bool:
        return True

    def action(self, prompt: str, power_w: float = 1.0) -> int:
        if self._per_prompt:
            return self._best_for(prompt)
        return self._best(float(prompt_complexity(prompt)))


def expert_pairs(
    expert,
    scenario: Scenario,
    prompts: Sequence[str],
    episodes_per_prompt: int = 8,
    seed: int = 0,
    **env_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """The expert's (observation, action) pairs from rollouts in :class:`PromptEnv`.

    ``episodes_per_prompt`` whole episodes per prompt (each round's power drawn
    as in training, so later rounds carry the expert's own history), on seeds
    from :data:`EXPERT_SEED_OFFSET`. Returns ``obs`` (n, d) float32 and
    ``actions`` (n,) int64.
    """
    missing = [p for p in prompts if not expert.covers(p)]
    if missing:
        raise PromptTrainingError(f"the expert has no demonstrations for {len(missing)} prompt(s), e.g. {missing[0]!r}")
    env = make_env(scenario, prompts, **env_kwargs)
    obs_rows, actions = [], []
    for j, prompt in enumerate(prompts):
        for e in range(int(episodes_per_prompt)):
            obs, info = env.reset(seed=EXPERT_SEED_OFFSET + seed * 100_000 + j * 1000 + e, options={"prompt": prompt})
            done = False
            while not done:
                a = expert.action(info["prompt"], info["power_w"])
                obs_rows.append(obs)
                actions.append(a)
                obs, _, terminated, truncated, info = env.step(a)
                done = terminated or truncated
    return np.asarray(obs_rows, dtype=np.float32), np.asarray(actions, dtype=np.int64)


__all__ = [
    "EXPERT_SEED_OFFSET",
    "DemoExpert",
    "ModelExpert",
    "PromptSplit",
    "PromptTrainingError",
    "expert_pairs",
    "expert_table",
    "prompt_key",
    "load_demonstrations",
    "scenario_prompts",
    "split_prompts",
]
