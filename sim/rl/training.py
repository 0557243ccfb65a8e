"""Train provisioning agents on ``sim/Provisioning-v0``: PPO and SAC (stable-baselines3), D3PG and its MLP ablation.

:func:`train` runs in chunks of ``training.eval_every_steps`` environment steps;
after each chunk it evaluates the deterministic policy on held-out episodes,
appends a point to ``curve.csv`` and saves the latest checkpoint (numbered ones
every ``training.checkpoint_every_steps``). ``resume=True`` continues from the
latest checkpoint of an output directory. A checkpoint is ``model.*`` plus
``checkpoint.json`` (algorithm, steps done, the environment's shape), which is
what :class:`agents.learned.LearnedProvisioning` needs to run it in the world.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sim.config import Scenario, scenario_to_yaml
from sim.io import write_csv, write_text
from sim.progress import count_progress
from sim.rl.checkpoints import CHECKPOINT_META, PROVISIONING_ALGORITHMS, load_model, save_model
from sim.rl.evaluation import evaluate
from sim.rl.provisioning_env import ProvisioningEnv
from sim.rl.registration import PROVISIONING_ENV_ID, WORLD_ENV_ID
from sim.rl.world_env import make_training_env

#: The provisioning learners :func:`train` knows (the CLI's ``--agent`` choices).
ALGORITHMS = PROVISIONING_ALGORITHMS


class TrainingError(ValueError):
    """Bad training input (unknown algorithm, nothing to resume, bad hyperparameter)."""


def build_model(algorithm: str, env: ProvisioningEnv, seed: int, hyperparameters: dict[str, Any]):
    """A fresh learner for ``algorithm`` on ``env`` with the scenario's hyperparameters."""
    if algorithm in ("ppo", "sac"):
        import stable_baselines3 as sb3

        cls = sb3.PPO if algorithm == "ppo" else sb3.SAC
        try:
            return cls("MlpPolicy", env, seed=seed, verbose=0, device="cpu", **hyperparameters)
        except TypeError as err:
            raise TrainingError(f"{algorithm}: bad hyperparameter: {err}") from None
    if algorithm in ("d3pg", "ddpg"):
        from sim.rl.algos.d3pg import D3PG, D3PGConfig

        try:
            config = D3PGConfig(**{**hyperparameters, "seed": seed})
        except TypeError as err:
            raise TrainingError(f"{algorithm}: bad hyperparameter: {err}") from None
        return D3PG(env, config, actor="diffusion" if algorithm == "d3pg" else "mlp")
    raise TrainingError(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")


@dataclass(frozen=True)
class TrainResult:
    out: Path
    curve: pd.DataFrame
    steps: int
    wall_time_s: float


def _learn(model, algorithm: str, steps: int) -> None:
    if algorithm in ("ppo", "sac"):
        model.learn(total_timesteps=steps, reset_num_timesteps=False)
    else:
        model.learn(total_timesteps=steps)


def train(
    scenario: Scenario,
    algorithm: str,
    steps: int,
    seed: int,
    out: Path,
    resume: bool = False,
    quiet: bool = False,
    trust: bool = False,
) -> TrainResult:
    """Train ``algorithm`` for ``steps`` environment steps in total; write ``curve.csv`` and checkpoints in ``out``.

    ``trust`` (with ``resume``): unpickle a stable-baselines3 checkpoint its ``checkpoint.json`` does not vouch for
    (:mod:`sim.rl.checkpoints`).
    """
    if algorithm not in ALGORITHMS:
        raise TrainingError(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    if steps < 1:
        raise TrainingError(f"--steps must be >= 1, got {steps}")
    t = scenario.training
    out = Path(out)
    latest = out / "checkpoints" / "latest"
    env = make_training_env(scenario)
    env.reset(seed=seed)
    curve_path = out / "curve.csv"
    if resume:
        meta_path = latest / CHECKPOINT_META
        if not meta_path.exists():
            raise TrainingError(f"nothing to resume: no checkpoint at {latest}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta["algorithm"] != algorithm:
            raise TrainingError(f"{latest} holds a {meta['algorithm']} checkpoint, not {algorithm}")
        model = load_model(algorithm, latest, env=env, trust=trust)
        done = int(meta["steps"])
        rows = pd.read_csv(curve_path).to_dict("records") if curve_path.exists() else []
    else:
        model = build_model(algorithm, env, seed, t.hyperparameters.get(algorithm, {}))
        done, rows = 0, []
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "scenario.yaml", scenario_to_yaml(scenario))
    started = time.perf_counter() - (float(rows[-1]["wall_time_s"]) if rows else 0.0)
    meta = {
        "algorithm": algorithm,
        "seed": seed,
        "scenario": scenario.name,
        "env": WORLD_ENV_ID if t.env == "world" else PROVISIONING_ENV_ID,
        "n_users": env.n_users,
        "action_mapping": t.action_mapping,
        "max_images": scenario.service.max_images_per_round,
        "p_total_w": scenario.masps[0].p_total_w,
    }
    with count_progress(steps, f"{algorithm} seed {seed}: environment steps", quiet) as advance:
        for _ in range(done):
            advance()
        while done < steps:
            chunk = min(t.eval_every_steps, steps - done)
            _learn(model, algorithm, chunk)
            done += chunk
            for _ in range(chunk):
                advance()
            mean, low, high = evaluate(model, scenario, t.eval_episodes, seed if t.eval_seed is None else t.eval_seed)
            rows.append({"algorithm": algorithm, "seed": seed, "steps": done, "eval_utility": mean,
                         "ci_low": low, "ci_high": high, "wall_time_s": time.perf_counter() - started})
            write_csv(curve_path, pd.DataFrame(rows))
            save_model(model, algorithm, latest, {**meta, "steps": done})
            if done % t.checkpoint_every_steps < chunk or done == steps:
                save_model(model, algorithm, out / "checkpoints" / f"step{done:08d}", {**meta, "steps": done})
    curve = pd.DataFrame(rows)
    return TrainResult(out, curve, done, time.perf_counter() - started)



def final_utility(curve: pd.DataFrame) -> float:
    """The last evaluation point of a training curve (NaN when empty)."""
    return float(curve["eval_utility"].iloc[-1]) if len(curve) else math.nan
