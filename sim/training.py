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
from typing import Any, Callable

import numpy as np
import pandas as pd

from sim.config import Scenario, scenario_to_yaml
from agents.base import Provision
from sim.envs import ProvisioningEnv, action_to_provision
from sim.progress import count_progress
from sim.report import mean_ci

ALGORITHMS = ("ppo", "sac", "d3pg", "ddpg")
#: Seeds of evaluation episodes start here; training episodes use the run's seed stream.
EVAL_SEED_OFFSET = 1_000_000
CHECKPOINT_META = "checkpoint.json"


class TrainingError(ValueError):
    """Bad training input (unknown algorithm, missing checkpoint, bad hyperparameter)."""


def make_env(scenario: Scenario) -> ProvisioningEnv:
    t = scenario.training
    return ProvisioningEnv(
        scenario, episode_length=t.episode_length, action_mapping=t.action_mapping, strategy=t.strategy
    )


def _model_file(algorithm: str, directory: Path) -> Path:
    return directory / ("model.zip" if algorithm in ("ppo", "sac") else "model.pt")


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
        from agents.d3pg import D3PG, D3PGConfig

        try:
            config = D3PGConfig(**{**hyperparameters, "seed": seed})
        except TypeError as err:
            raise TrainingError(f"{algorithm}: bad hyperparameter: {err}") from None
        return D3PG(env, config, actor="diffusion" if algorithm == "d3pg" else "mlp")
    raise TrainingError(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")


def load_model(algorithm: str, directory: Path, env: ProvisioningEnv | None = None):
    """The learner saved in checkpoint ``directory``."""
    path = _model_file(algorithm, directory)
    if not path.exists():
        raise TrainingError(f"no {algorithm} checkpoint at {path}")
    if algorithm in ("ppo", "sac"):
        import stable_baselines3 as sb3

        cls = sb3.PPO if algorithm == "ppo" else sb3.SAC
        model = cls.load(path, env=env, device="cpu")
        buffer = directory / "replay_buffer.pkl"
        if algorithm == "sac" and env is not None and buffer.exists():
            model.load_replay_buffer(buffer)
        return model
    from agents.d3pg import D3PG

    return D3PG.load(path, env=env)


def _save(model, algorithm: str, directory: Path, meta: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    model.save(_model_file(algorithm, directory))
    if algorithm == "sac":
        model.save_replay_buffer(directory / "replay_buffer.pkl")
    tmp = directory / (CHECKPOINT_META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmp.replace(directory / CHECKPOINT_META)


#: Per-episode columns of :func:`evaluate_policy`.
EVAL_COLUMNS = ("episode", "utility", "qoe", "satisfied", "n_images", "power_share_max", "penalty")


def evaluate_policy(
    decide: Callable[[ProvisioningEnv, np.ndarray], Provision], scenario: Scenario, episodes: int, seed: int
) -> pd.DataFrame:
    """Per-episode means of a policy on the held-out evaluation episodes of ``seed``.

    ``decide(env, observation)`` returns the :class:`~agents.base.Provision` for the
    env's current users (``env.current_observation`` has them in the world's terms).
    Episode ``i`` is ``env.reset(seed=EVAL_SEED_OFFSET + 1000 seed + i)``: every
    policy, learned or not, meets the same users and the same draws. Columns
    (:data:`EVAL_COLUMNS`): utility per decision (eq. 22a), QoE per user, share
    of users satisfied, images per user, the largest user's share of the power,
    penalty per decision.
    """
    env = make_env(scenario)
    rows = []
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED_OFFSET + seed * 1000 + i)
        steps, done = [], False
        while not done:
            provision = decide(env, obs)
            obs, reward, terminated, truncated, info = env.step_provision(provision)
            u = info["users"]
            power = np.asarray(u["power_w"], dtype=float)
            steps.append((reward, float(np.mean(u["qoe"])), float(np.mean(u["satisfied"])),
                          float(np.mean(u["n_images"])), float(power.max() / max(power.sum(), 1e-12)), info["penalty"]))
            done = terminated or truncated
        rows.append((i, *np.mean(steps, axis=0)))
    return pd.DataFrame(rows, columns=list(EVAL_COLUMNS))


def model_decider(model, scenario: Scenario) -> Callable[[ProvisioningEnv, np.ndarray], Provision]:
    """:func:`evaluate_policy`'s ``decide`` for a learner: its deterministic action, mapped as in training."""

    def decide(env: ProvisioningEnv, obs: np.ndarray) -> Provision:
        action, _ = model.predict(obs, deterministic=True)
        return action_to_provision(action, env.n_max, env.p_total_w, env.action_mapping)

    return decide


def agent_decider(agent) -> Callable[[ProvisioningEnv, np.ndarray], Provision]:
    """:func:`evaluate_policy`'s ``decide`` for a world provisioning agent (static, random, oracle...)."""
    return lambda env, obs: agent.decide(env.current_observation)


def evaluate(model, scenario: Scenario, episodes: int, seed: int) -> tuple[float, float, float]:
    """Mean utility per decision of the deterministic policy over held-out episodes, with its 95% CI."""
    frame = evaluate_policy(model_decider(model, scenario), scenario, episodes, seed)
    return mean_ci(frame["utility"].to_numpy())


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
) -> TrainResult:
    """Train ``algorithm`` for ``steps`` environment steps in total; write ``curve.csv`` and checkpoints in ``out``."""
    if algorithm not in ALGORITHMS:
        raise TrainingError(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    if steps < 1:
        raise TrainingError(f"--steps must be >= 1, got {steps}")
    t = scenario.training
    out = Path(out)
    latest = out / "checkpoints" / "latest"
    env = make_env(scenario)
    env.reset(seed=seed)
    curve_path = out / "curve.csv"
    if resume:
        meta_path = latest / CHECKPOINT_META
        if not meta_path.exists():
            raise TrainingError(f"nothing to resume: no checkpoint at {latest}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta["algorithm"] != algorithm:
            raise TrainingError(f"{latest} holds a {meta['algorithm']} checkpoint, not {algorithm}")
        model = load_model(algorithm, latest, env=env)
        done = int(meta["steps"])
        rows = pd.read_csv(curve_path).to_dict("records") if curve_path.exists() else []
    else:
        model = build_model(algorithm, env, seed, t.hyperparameters.get(algorithm, {}))
        done, rows = 0, []
        out.mkdir(parents=True, exist_ok=True)
        (out / "scenario.yaml").write_text(scenario_to_yaml(scenario), encoding="utf-8")
    started = time.perf_counter() - (float(rows[-1]["wall_time_s"]) if rows else 0.0)
    meta = {
        "algorithm": algorithm,
        "seed": seed,
        "scenario": scenario.name,
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
            mean, low, high = evaluate(model, scenario, t.eval_episodes, seed)
            rows.append({"algorithm": algorithm, "seed": seed, "steps": done, "eval_utility": mean,
                         "ci_low": low, "ci_high": high, "wall_time_s": time.perf_counter() - started})
            pd.DataFrame(rows).to_csv(curve_path.with_suffix(".csv.tmp"), index=False)
            curve_path.with_suffix(".csv.tmp").replace(curve_path)
            _save(model, algorithm, latest, {**meta, "steps": done})
            if done % t.checkpoint_every_steps < chunk or done == steps:
                _save(model, algorithm, out / "checkpoints" / f"step{done:08d}", {**meta, "steps": done})
    curve = pd.DataFrame(rows)
    return TrainResult(out, curve, done, time.perf_counter() - started)



def final_utility(curve: pd.DataFrame) -> float:
    """The last evaluation point of a training curve (NaN when empty)."""
    return float(curve["eval_utility"].iloc[-1]) if len(curve) else math.nan
