"""Training prompt-engineering policies on ``sim/Prompt-v0``: GAIL and PPO (``python -m sim train-prompt``).

:func:`train_prompt_policy` trains ``"gail"`` (:class:`sim.rl.algos.gail.GAIL`,
PPO generator, discriminator reward, imitating the expert of
:mod:`sim.rl.prompt_expert`) or ``"ppo"`` (plain stable-baselines3 PPO on the
env's received-score reward, a baseline that sees the true reward), in chunks;
after each chunk it evaluates on held-out prompts
(:mod:`sim.rl.prompt_evaluation`), appends to ``curve.csv`` and saves
``checkpoints/latest`` (:mod:`sim.rl.checkpoints`).
:class:`agents.prompt_learned.LearnedPrompt` runs such a checkpoint in the world.

Learners use ``gamma = 0``: a round's outcome does not depend on earlier
actions, so the per-round reward is the objective (see :class:`~sim.rl.prompt_env.PromptEnv`).

Torch and stable-baselines3 (the ``learn`` extra) are imported only when a learner is built.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from sim.config import Scenario, scenario_to_yaml
from sim.io import write_csv, write_json, write_text
from sim.model.quality import N_STRATEGIES
from sim.progress import count_progress
from sim.rl.checkpoints import PROMPT_ALGORITHMS, save_prompt_checkpoint
from sim.rl.prompt_env import make_env
from sim.rl.prompt_evaluation import evaluate_prompt_policy, model_policy
from sim.rl.prompt_expert import (
    DemoExpert,
    ModelExpert,
    PromptSplit,
    PromptTrainingError,
    expert_pairs,
    load_demonstrations,
    prompt_key,
    scenario_prompts,
    split_prompts,
)

#: The prompt-policy learners (the CLI's ``--agent`` choices).
ALGORITHMS = PROMPT_ALGORITHMS

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


def _demonstrations_for(scenario: Scenario, demo, prompts: Sequence[str], out: Path, quiet: bool) -> tuple[pd.DataFrame, str]:
    if demo is not None:
        frame = load_demonstrations(demo)
        return frame, (str(demo) if not isinstance(demo, pd.DataFrame) else "<frame>")
    from sim.dataset.demonstrations import build_demo_dataset

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
    expert_score: str = "received_score",
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
    :data:`PPO_DEFAULTS`; for GAIL :class:`sim.rl.algos.gail.GAILConfig` fields
    (``disc_obs_start`` defaults to ``7 H``: the discriminator does not see the
    history); merged over the scenario's ``training.hyperparameters.prompt_<algorithm>``.
    ``embedding``: ``"features"`` by default -- measured: with 32 training
    prompts, policies on MiniLM's 384-d ``tau(p)`` (alone or with the features)
    did not generalise the complexity rule to held-out prompts, the 12-d
    features did (see ``docs`` of :mod:`sim.rl.prompt_env`).
    ``eval_every``: steps between curve points (default ``min(steps, 2048)``).
    ``expert_source``: whom GAIL imitates -- ``"demo"`` (the best strategy per
    prompt and power in D, as in the paper) or ``"model"`` (:class:`ModelExpert`,
    the quality model's noise-free optimum: what D with unlimited seeds would
    give; a check of the method apart from D's sampling noise). ``expert_score``:
    what D's expert ranks strategies by, ``received_score`` (per power level) or
    ``generation_score`` (the intact image's score, pooled over D's power levels:
    the strategy does not change the damage, so the ranking loses the channel's noise).

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
    if expert_score not in ("received_score", "generation_score"):
        raise PromptTrainingError(f"expert_score must be 'received_score' or 'generation_score', got {expert_score!r}")
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
            keys = {prompt_key(p) for p in train_prompts}
            eval_prompts = [p for p in pool if prompt_key(p) not in keys]
        split = PromptSplit(tuple(train_prompts), tuple(eval_prompts))
    if not split.train or not split.held_out:
        raise PromptTrainingError("need at least one training and one evaluation prompt")
    params = {**scenario.training.hyperparameters.get(f"prompt_{algorithm}", {}), **(hyperparameters or {})}
    eval_every = int(eval_every) if eval_every is not None else min(steps, 2048)
    if eval_every < 1:
        raise PromptTrainingError(f"eval_every must be >= 1, got {eval_every}")

    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "scenario.yaml", scenario_to_yaml(scenario))
    write_json(out / "split.json", {"train": list(split.train), "held_out": list(split.held_out)}, indent=1)
    env_kwargs: dict[str, Any] = {"embedding": embedding, "history_len": history_len}
    env = make_env(scenario, list(split.train), normalize_reward=True, **env_kwargs)
    env_kwargs = {**env.env_kwargs(), "normalize_reward": False}
    env.reset(seed=seed)

    expert = None
    demo_source = None
    if demo is not None or algorithm == "gail":
        frame, demo_source = _demonstrations_for(scenario, demo, split.train, out, quiet)
        expert = DemoExpert.from_demonstrations(frame, expert_score, pool_powers=expert_score == "generation_score")

    if algorithm == "gail":
        from sim.rl.algos.gail import GAIL, GAILConfig

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
            write_csv(curve_path, pd.DataFrame(rows))
            save_prompt_checkpoint(model, algorithm, latest, {**meta, "steps": done})
    final = out / "checkpoints" / f"step{done:08d}"
    save_prompt_checkpoint(model, algorithm, final, {**meta, "steps": done})
    return PromptTrainResult(out, pd.DataFrame(rows), done, time.perf_counter() - started, train_time, latest, split)


__all__ = ["ALGORITHMS", "PPO_DEFAULTS", "PromptTrainResult", "train_prompt_policy"]
