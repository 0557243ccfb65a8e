"""Prompt-engineering policies on ``sim/Prompt-v0``: the expert from D, GAIL and PPO training, evaluation.

* **Split.** :func:`split_prompts` divides a prompt set into demonstration
  (training) prompts and held-out prompts, stratified by complexity and fixed
  by a seed.
* **Expert.** :func:`expert_table` takes, per demonstration prompt and power
  level of a demonstration dataset D (:mod:`sim.demo_dataset`), the strategy
  with the best mean received score over D's seeds; :class:`DemoExpert` answers
  from that table (nearest power level, in log power), :class:`ModelExpert`
  is the quality model's noise-free optimum (``argmax_s`` of the expected best
  received score, which does not depend on the power: the damage multiplies
  every strategy's score alike). :func:`expert_pairs` rolls the expert out in
  :class:`~sim.prompt_env.PromptEnv` and returns its (observation, action)
  pairs in the env's observation format, later rounds (with a history) included.
* **Training.** :func:`train_prompt_policy` trains ``"gail"``
  (:class:`agents.irl.GAIL`, PPO generator, discriminator reward) or ``"ppo"``
  (plain stable-baselines3 PPO on the env's received-score reward, a baseline
  that sees the true reward), in chunks; after each chunk it evaluates on
  held-out prompts, appends to ``curve.csv`` and saves
  ``checkpoints/latest`` (``model.zip``, the policy; ``checkpoint.json``; for
  GAIL also ``discriminator.pt``). :class:`agents.prompt_learned.LearnedPrompt`
  runs such a checkpoint in the world.
* **Evaluation.** :func:`evaluate_prompt_policy` / :func:`evaluate_policies`
  run any policy -- :func:`baseline_policy` (``raw`` = 0, ``random``,
  ``empirical`` = 6, ``expert``, ``model``), :func:`checkpoint_policy` (a
  trained one) or any callable ``(obs, context) -> strategy`` -- on a list of
  prompts, on the same seeds for every policy (common random numbers), and
  report the first round's mean received score, single-round success
  ``P(score >= threshold)`` and agreement with the expert's action, each with a
  95% CI over episodes, plus rounds and served share over whole episodes.

Learners use ``gamma = 0``: a round's outcome does not depend on earlier
actions, so the per-round reward is the objective (see :class:`~sim.prompt_env.PromptEnv`).

Torch and stable-baselines3 (the ``learn`` extra) are imported only when a learner is built.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from sim.config import Scenario, scenario_to_yaml
from sim.progress import count_progress
from sim.prompt_env import ObservationSpec, PromptEnv
from sim.prompting.prompts import load_prompts
from sim.quality import N_STRATEGIES, prompt_complexity
from sim.report import mean_ci

ALGORITHMS = ("gail", "ppo")
#: Seeds of evaluation episodes start here (as in :mod:`sim.training`).
EVAL_SEED_OFFSET = 1_000_000
#: Seeds of expert rollouts start here (apart from training and evaluation episodes).
EXPERT_SEED_OFFSET = 2_000_000
CHECKPOINT_META = "checkpoint.json"
MODEL_FILE = "model.zip"

#: PPO settings of both learners unless overridden (``gamma = 0``: see the module docstring).
PPO_DEFAULTS: dict[str, Any] = {
    "learning_rate": 3e-4,
    "n_steps": 512,
    "batch_size": 64,
    "n_epochs": 4,
    "gamma": 0.0,
    "gae_lambda": 0.95,
    "ent_coef": 0.0,
}

#: A prompt policy: ``(observation vector, env context) -> strategy``. The context is the
#: env's ``info`` for the decision (``prompt``, ``power_w``, ``history``, ``threshold``, ...).
PromptPolicy = Callable[[np.ndarray, Mapping[str, Any]], int]


class PromptTrainingError(ValueError):
    """Bad input to prompt-policy training (unknown algorithm, bad demonstrations, missing checkpoint)."""


def _key(prompt: str) -> str:
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
            self._by_prompt[_key(prompt)] = (np.log(g["power_w"].to_numpy(float)), g["strategy"].to_numpy(int))

    @classmethod
    def from_demonstrations(
        cls, demo: str | Path | pd.DataFrame, score: str = "received_score", pool_powers: bool = False
    ) -> "DemoExpert":
        return cls(expert_table(demo, score, pool_powers))

    @property
    def prompts(self) -> list[str]:
        return list(dict.fromkeys(self.table["prompt"]))

    def covers(self, prompt: str) -> bool:
        return _key(prompt) in self._by_prompt

    def action(self, prompt: str, power_w: float) -> int:
        log_p, strategies = self._by_prompt[_key(prompt)]
        return int(strategies[int(np.argmin(np.abs(log_p - math.log(max(float(power_w), 1e-12)))))])

    def strategy_shares(self) -> dict[int, float]:
        """Share of (prompt, power) entries per expert strategy."""
        counts = self.table["strategy"].value_counts(normalize=True)
        return {s: float(counts.get(s, 0.0)) for s in range(N_STRATEGIES)}


class ModelExpert:
    """The quality model's optimum: ``argmax_s`` expected best received score of ``n_images`` images.

    The damage factor is the same for every strategy, so the choice depends on
    the prompt's complexity only (not on its random effect, which shifts every
    strategy alike, nor on the power).
    """

    def __init__(self, quality, n_images: int = 1):
        self.quality = quality
        self.n_images = int(n_images)

    @lru_cache(maxsize=4096)
    def _best(self, complexity: float) -> int:
        means = self.quality.expected_best_of_n(complexity, np.arange(N_STRATEGIES), self.n_images)
        return int(np.argmax(means))

    def covers(self, prompt: str) -> bool:
        return True

    def action(self, prompt: str, power_w: float = 1.0) -> int:
        return self._best(float(prompt_complexity(prompt)))


def make_env(scenario: Scenario, prompts: Sequence[str] | None = None, **env_kwargs: Any) -> PromptEnv:
    """A :class:`PromptEnv` on ``prompts`` with ``env_kwargs`` (``None`` values mean the default)."""
    kwargs = {k: v for k, v in env_kwargs.items() if v is not None}
    if "power_range_w" in kwargs:
        kwargs["power_range_w"] = tuple(kwargs["power_range_w"])
    return PromptEnv(scenario, prompts=prompts, **kwargs)


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
    """A policy from anything with SB3's ``predict(obs, deterministic=...)`` (PPO, :class:`agents.irl.GAIL`)."""

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


def load_prompt_checkpoint(directory: str | Path) -> tuple[dict[str, Any], Any]:
    """``(checkpoint.json contents, policy model)`` of a prompt-policy checkpoint directory.

    The model is the stable-baselines3 PPO in ``model.zip`` (GAIL's generator,
    or the PPO baseline); only its ``predict`` is needed to act.
    """
    directory = Path(directory)
    meta_path = directory / CHECKPOINT_META
    if not meta_path.is_file():
        raise PromptTrainingError(f"{directory}: not a prompt-policy checkpoint directory (no {CHECKPOINT_META})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("kind") != "prompt":
        raise PromptTrainingError(f"{directory}: holds a {meta.get('algorithm', 'non-prompt')} checkpoint, not a prompt policy")
    if not (directory / MODEL_FILE).is_file():
        raise PromptTrainingError(f"{directory}: no {MODEL_FILE}")
    from stable_baselines3 import PPO

    return meta, PPO.load(directory / MODEL_FILE, device="cpu")


def checkpoint_policy(directory: str | Path, deterministic: bool = True) -> PromptPolicy:
    """The policy of a checkpoint of :func:`train_prompt_policy`, acting on the env's observation."""
    meta, model = load_prompt_checkpoint(directory)
    spec = ObservationSpec.from_dict(meta["observation"])
    from sim.prompt_env import prompt_observation

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


# ---------------------------------------------------------------------------
# training


@dataclass(frozen=True)
class PromptTrainResult:
    out: Path
    curve: pd.DataFrame
    steps: int
    wall_time_s: float
    #: Wall time spent learning (evaluations excluded).
    train_time_s: float
    checkpoint: Path
    split: PromptSplit


def _save_checkpoint(model, algorithm: str, directory: Path, meta: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if algorithm == "gail":
        model.save(directory)
    else:
        model.save(directory / MODEL_FILE)
    tmp = directory / (CHECKPOINT_META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmp.replace(directory / CHECKPOINT_META)


def _demonstrations_for(scenario: Scenario, demo, prompts: Sequence[str], out: Path, quiet: bool) -> tuple[pd.DataFrame, str]:
    if demo is not None:
        frame = load_demonstrations(demo)
        return frame, (str(demo) if not isinstance(demo, pd.DataFrame) else "<frame>")
    from sim.demo_dataset import build_demo_dataset

    path = out / "demo.parquet"
    build_demo_dataset(scenario, path, prompts=list(prompts), seed=scenario.seed, quiet=quiet)
    return load_demonstrations(path), str(path)


def train_prompt_policy(
    scenario: Scenario,
    algorithm: str,
    steps: int,
    seed: int,
    out: str | Path,
    train_prompts: Sequence[str] | None = None,
    eval_prompts: Sequence[str] | None = None,
    demo: str | Path | pd.DataFrame | None = None,
    *,
    n_train: int = 32,
    split_seed: int = 0,
    embedding: str = "features",
    history_len: int = 3,
    eval_every: int | None = None,
    eval_episodes_per_prompt: int = 2,
    expert_episodes_per_prompt: int = 8,
    hyperparameters: Mapping[str, Any] | None = None,
    expert_source: str = "demo",
    quiet: bool = False,
) -> PromptTrainResult:
    """Train a prompt policy on ``sim/Prompt-v0`` for ``steps`` env steps; write ``curve.csv`` and checkpoints.

    ``algorithm``: ``"gail"`` (needs demonstrations) or ``"ppo"`` (the env's
    received score / 10 as reward). Prompts: ``train_prompts`` (default: the
    training part of :func:`split_prompts` of the scenario's prompt set with
    ``n_train`` and ``split_seed``), ``eval_prompts`` (default: all the others).
    ``demo``: D as a Parquet path or frame; for GAIL without one, D is built for
    the training prompts with the scenario's generator and assessor into
    ``out/demo.parquet``. The expert is :class:`DemoExpert` of D; its rollouts on
    the training prompts are GAIL's demonstrations, and the curve's
    ``agreement`` is measured against it where D covers an evaluation prompt
    (``model_agreement`` against :class:`ModelExpert` always).
    ``hyperparameters``: for PPO the constructor's keywords over
    :data:`PPO_DEFAULTS`; for GAIL :class:`agents.irl.GAILConfig` fields
    (``disc_obs_start`` defaults to ``7 H``: the discriminator does not see the
    history); merged over the scenario's ``training.hyperparameters.prompt_<algorithm>``.
    ``embedding``: ``"features"`` by default -- measured: with 32 training
    prompts, policies on MiniLM's 384-d ``tau(p)`` (alone or with the features)
    did not generalise the complexity rule to held-out prompts, the 12-d
    features did (see ``docs`` of :mod:`sim.prompt_env`).
    ``eval_every``: steps between curve points (default ``min(steps, 2048)``).
    ``expert_source``: whom GAIL imitates -- ``"demo"`` (the best strategy per
    prompt and power in D, as in the paper) or ``"model"`` (:class:`ModelExpert`,
    the quality model's noise-free optimum: what D with unlimited seeds would
    give; a check of the method apart from D's sampling noise).

    Writes ``out/scenario.yaml``, ``out/split.json``, ``out/curve.csv`` (one row
    per evaluation: ``steps``, ``score``/``success``/``agreement`` with
    ``_ci_low``/``_ci_high``, ``model_agreement``, ``train_time_s``,
    ``wall_time_s``), ``out/checkpoints/latest`` and, at the end,
    ``out/checkpoints/step<N>``.
    """
    if algorithm not in ALGORITHMS:
        raise PromptTrainingError(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    if expert_source not in ("demo", "model"):
        raise PromptTrainingError(f"expert_source must be 'demo' or 'model', got {expert_source!r}")
    if isinstance(steps, bool) or int(steps) < 1:
        raise PromptTrainingError(f"steps must be >= 1, got {steps}")
    steps = int(steps)
    out = Path(out)
    pool = scenario_prompts(scenario)
    if train_prompts is None:
        split = split_prompts(pool, n_train, split_seed)
        if eval_prompts is not None:
            split = PromptSplit(split.train, tuple(eval_prompts))
    else:
        train_prompts = list(dict.fromkeys(train_prompts))
        if eval_prompts is None:
            keys = {_key(p) for p in train_prompts}
            eval_prompts = [p for p in pool if _key(p) not in keys]
        split = PromptSplit(tuple(train_prompts), tuple(eval_prompts))
    if not split.train or not split.held_out:
        raise PromptTrainingError("need at least one training and one evaluation prompt")
    params = {**scenario.training.hyperparameters.get(f"prompt_{algorithm}", {}), **(hyperparameters or {})}
    eval_every = int(eval_every) if eval_every is not None else min(steps, 2048)
    if eval_every < 1:
        raise PromptTrainingError(f"eval_every must be >= 1, got {eval_every}")

    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.yaml").write_text(scenario_to_yaml(scenario), encoding="utf-8")
    (out / "split.json").write_text(json.dumps({"train": list(split.train), "held_out": list(split.held_out)}, indent=1) + "\n",
                                    encoding="utf-8")
    env_kwargs: dict[str, Any] = {"embedding": embedding, "history_len": history_len}
    env = make_env(scenario, list(split.train), normalize_reward=True, **env_kwargs)
    env_kwargs = {**env.env_kwargs(), "normalize_reward": False}
    env.reset(seed=seed)

    expert = None
    demo_source = None
    if demo is not None or algorithm == "gail":
        frame, demo_source = _demonstrations_for(scenario, demo, split.train, out, quiet)
        expert = DemoExpert.from_demonstrations(frame)

    if algorithm == "gail":
        from agents.irl import GAIL, GAILConfig

        teacher = expert if expert_source == "demo" else ModelExpert(env.quality, env.n_images)
        obs, actions = expert_pairs(teacher, scenario, split.train, expert_episodes_per_prompt, seed, **env_kwargs)
        # The discriminator does not see the history (the policy's own past actions; see GAILConfig).
        try:
            config = GAILConfig(**{"disc_obs_start": N_STRATEGIES * env.obs_spec.history_len, **params, "seed": seed})
        except TypeError as err:
            raise PromptTrainingError(f"gail: bad hyperparameter: {err}") from None
        model = GAIL(env, obs, actions, config)
    else:
        import stable_baselines3 as sb3

        kwargs = {**PPO_DEFAULTS, **params}
        kwargs.setdefault("policy_kwargs", {"net_arch": [64, 64]})
        try:
            model = sb3.PPO("MlpPolicy", env, seed=seed, verbose=0, device="cpu", **kwargs)
        except TypeError as err:
            raise PromptTrainingError(f"ppo: bad hyperparameter: {err}") from None

    meta = {
        "kind": "prompt",
        "algorithm": algorithm,
        "seed": int(seed),
        "scenario": scenario.name,
        "observation": env.obs_spec.to_dict(),
        "env": env_kwargs,
        "hyperparameters": params,
        "train_prompts": list(split.train),
        "demo": demo_source,
        "expert_source": expert_source if algorithm == "gail" else None,
    }
    eval_env = make_env(scenario, list(split.held_out), **env_kwargs)
    rows: list[dict[str, Any]] = []
    done, train_time = 0, 0.0
    started = time.perf_counter()
    latest = out / "checkpoints" / "latest"
    curve_path = out / "curve.csv"
    with count_progress(steps, f"prompt {algorithm} seed {seed}: environment steps", quiet) as advance:
        while done < steps:
            chunk = min(eval_every, steps - done)
            t0 = time.perf_counter()
            model.learn(total_timesteps=chunk, reset_num_timesteps=False)
            train_time += time.perf_counter() - t0
            # PPO collects whole rollouts of n_steps, so a chunk may run a little past its length.
            before, done = done, max(done + chunk, int(model.num_timesteps))
            for _ in range(min(done, steps) - before):
                advance()
            ev = evaluate_prompt_policy(model_policy(model), scenario, split.held_out, eval_episodes_per_prompt, seed,
                                        expert, algorithm, env=eval_env).summary
            row = {"algorithm": algorithm, "seed": seed, "steps": done}
            row.update({k: v for k, v in ev.items() if k not in ("policy", "episodes", "prompts")})
            if algorithm == "gail":
                row.update({f"disc_{k}": v for k, v in model.last_stats.items()})
            row.update({"train_time_s": train_time, "wall_time_s": time.perf_counter() - started})
            rows.append(row)
            pd.DataFrame(rows).to_csv(curve_path.with_suffix(".csv.tmp"), index=False)
            curve_path.with_suffix(".csv.tmp").replace(curve_path)
            _save_checkpoint(model, algorithm, latest, {**meta, "steps": done})
    final = out / "checkpoints" / f"step{done:08d}"
    _save_checkpoint(model, algorithm, final, {**meta, "steps": done})
    return PromptTrainResult(out, pd.DataFrame(rows), done, time.perf_counter() - started, train_time, latest, split)


__all__ = [
    "ALGORITHMS",
    "CHECKPOINT_META",
    "DemoExpert",
    "EVAL_SEED_OFFSET",
    "ModelExpert",
    "PPO_DEFAULTS",
    "PolicyEvaluation",
    "PromptPolicy",
    "PromptSplit",
    "PromptTrainResult",
    "PromptTrainingError",
    "baseline_policy",
    "checkpoint_policy",
    "constant_policy",
    "evaluate_policies",
    "evaluate_prompt_policy",
    "expert_pairs",
    "expert_policy",
    "expert_table",
    "load_demonstrations",
    "load_prompt_checkpoint",
    "make_env",
    "model_policy",
    "random_policy",
    "scenario_prompts",
    "split_prompts",
    "train_prompt_policy",
]
