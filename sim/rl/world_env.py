"""``sim/World-v0``: the SimPy world itself as a gymnasium environment, stepped from one provisioning decision to the next.

Where :class:`sim.rl.provisioning_env.ProvisioningEnv` is the paper's one-epoch
problem (fresh users every step, a contextual bandit), this environment *is*
the world: :class:`sim.world.simulation.World` built with
``external_decisions=True`` runs arrivals, the MASPs' queues, generation,
delivery and service rounds with its own code and round rules, and stops
whenever a MASP needs a decision. Users stay for several rounds, so a decision
changes who waits, for how long and with what best score at later decisions:
``gamma > 0`` matters.

>>> from sim.config import parse_scenario
>>> env = WorldEnv(parse_scenario({"name": "doc", "arrivals": {"n_users": 6}}))
>>> obs, info = env.reset(seed=0)
>>> obs.shape, env.action_space.shape, info["users"]
((27,), (6,), 3)
>>> total, done = 0.0, False
>>> while not done:
...     obs, reward, terminated, truncated, info = env.step(np.zeros(6, dtype=np.float32))
...     total, done = total + reward, terminated or truncated
>>> bool(abs(total - info["summary"]["mean_utility"]) < 1e-9)
True
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim.backends import build_service_models
from sim.config import Scenario, default_scenario
from sim.decisions import ProvisioningObservation
from sim.rl.features import ACTION_MAPPINGS, batch_provision, world_observation_space, world_observation_vector
from sim.rl.registration import WORLD_ENV_ID as ENV_ID
from sim.world.simulation import DecisionRequest, World


#: Unseeded resets (training episodes) draw root seeds from ``[TRAINING_SEED_BASE, 2**31)``.
TRAINING_SEED_BASE = 2_000_000


class WorldEnv(gym.Env):
    """The world's provisioning decisions as a sequential decision problem.

    **Description.** An episode is one replication of the scenario: its users
    arrive (batch or Poisson), join a MASP's queue, and are served in decision
    epochs of up to ``Q`` users; unsatisfied users come back for another round
    until ``service.max_rounds``. Each step is one decision epoch of one MASP:
    the agent chooses ``(N_i, P_i)`` for the users it serves now, the world
    simulates until the next decision is needed (that epoch's rounds, arrivals,
    other MASPs), and the step returns. Prompt strategies come from the
    scenario's prompt agent. Images are delivered ``statistical`` by default
    (the fitted damage model, no pixels: fast); ``delivery="bytes"`` runs the
    real-bytes path and the scenario's assessor.

    **Observation space.** ``Box(float32, (8 Q + 3,))`` from
    :func:`sim.rl.features.world_observation_vector`: per user (padded to ``Q``
    and masked) complexity, distance, threshold, mean SNR at 1 W, rounds done,
    best score so far, time waited, present; then the MASP's waiting users, GPU
    backlog and ``P_total``.

    **Action space.** ``Box([-1, 1], (2 Q,))`` as in ``sim/Provisioning-v0``
    (:func:`sim.rl.features.batch_provision`): images from the first ``Q``
    entries, the power split from the last ``Q`` (``feasible``: a softmax share
    of ``P_total``; ``penalised``: the paper's raw action). Entries of padded
    users are ignored.

    **Reward.** The utilities (:attr:`sim.world.records.UserRecord.utility`,
    over the user's whole stay) of the users who leave during the step, divided
    by the number of users of the run. An episode's return therefore equals the
    run's ``summary["mean_utility"]`` for the same seed and decisions
    (``tests/test_world_env.py`` checks it).

    **Starting state.** ``reset(seed=s)`` runs the world with root seed ``s``
    until the first decision. Without a seed (training), the root seed is drawn
    from the env's ``np_random`` at or above :data:`TRAINING_SEED_BASE`, so a
    learner never trains on the worlds of smaller seeds that ``compare`` and the
    evaluation episodes (:data:`sim.rl.evaluation.EVAL_SEED_OFFSET`) use.

    **Episode end.** Terminated when every user has left; truncated after
    ``max_steps`` decisions (default: none). The scenario's ``service.horizon_s``
    is not used (an episode runs until the last user leaves).

    **Arguments.** ``scenario``; ``n_users`` (``Q``, default the largest
    ``max_users_per_epoch`` of the scenario's MASPs); ``delivery``
    (``"statistical"``, ``"bytes"`` or ``None`` for the scenario's); ``action_mapping``;
    ``max_steps``; ``render_mode`` (``None`` or ``"ansi"``); ``record_images`` (keep the world's
    per-image records, ``env.world.image_records``; off by default: the summary does not need them).

    **Info.** ``users`` (in this decision), ``masp``, ``time_s``, ``decisions``
    (made so far), ``departed``; at the end also ``summary`` (the run's summary).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        scenario: Scenario | None = None,
        n_users: int | None = None,
        delivery: str | None = "statistical",
        action_mapping: str = "feasible",
        max_steps: int | None = None,
        render_mode: str | None = None,
        record_images: bool = False,
    ):
        if scenario is None:  # gym.make(ENV_ID) with no arguments: every default (sim.config.default_scenario)
            scenario = default_scenario()
        if not isinstance(scenario, Scenario):
            raise TypeError(f"scenario must be a sim.config.Scenario, got {type(scenario).__name__}")
        if action_mapping not in ACTION_MAPPINGS:
            raise ValueError(f"action_mapping must be one of {', '.join(ACTION_MAPPINGS)}, got {action_mapping!r}")
        if delivery not in (None, "statistical", "bytes"):
            raise ValueError(f"delivery must be 'statistical', 'bytes' or None (the scenario's), got {delivery!r}")
        if max_steps is not None and int(max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        if len({m.p_total_w for m in scenario.masps}) > 1:
            raise ValueError("one policy decides for every MASP: give every MASP the same p_total_w")
        channel = scenario.channel if delivery is None else scenario.channel.model_copy(update={"delivery": delivery})
        # The world runs until the last user leaves, so that the return is the whole run's objective.
        service = scenario.service.model_copy(update={"horizon_s": None})
        self.scenario = scenario.model_copy(update={"channel": channel, "service": service})
        self.n_users = int(n_users if n_users is not None else max(m.max_users_per_epoch for m in scenario.masps))
        if self.n_users < max(m.max_users_per_epoch for m in scenario.masps):
            raise ValueError(f"n_users ({self.n_users}) must cover every MASP's max_users_per_epoch")
        self.n_max = int(scenario.service.max_images_per_round)
        self.p_total_w = float(scenario.masps[0].p_total_w)
        self.action_mapping = action_mapping
        self.max_steps = None if max_steps is None else int(max_steps)
        self.render_mode = render_mode
        self.record_images = bool(record_images)
        #: The models of every episode's world, built once (the world's own objects, shared across resets).
        self.models = build_service_models(self.scenario)
        self.observation_space = world_observation_space(self.n_users)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2 * self.n_users,), dtype=np.float32)
        self.world: World | None = None
        self._request: DecisionRequest | None = None
        self._steps = 0
        self._departed = 0
        self._last: dict[str, Any] = {}

    @property
    def current_observation(self) -> ProvisioningObservation:
        """The world-style observation of the users the next :meth:`step` decides for."""
        if self._request is None:
            raise RuntimeError("no decision pending: call reset() (or the episode has ended)")
        return self._request.observation

    def _vector(self) -> np.ndarray:
        if self._request is None:
            return np.zeros(self.observation_space.shape, dtype=np.float32)
        return world_observation_vector(self._request.observation, self.scenario, self.n_users)

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"decisions": self._steps, "departed": self._departed}
        if self._request is not None:
            obs = self._request.observation
            info.update(users=obs.n_users, masp=obs.masp, time_s=obs.time_s)
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        root = int(seed) if seed is not None else int(self.np_random.integers(TRAINING_SEED_BASE, 2**31))
        self.world = World(self.scenario, seed=root, external_decisions=True, models=self.models,
                           record_images=self.record_images)
        self._steps, self._departed, self._last = 0, 0, {}
        self._request = self.world.advance()
        return self._vector(), {**self._info(), "root_seed": root}

    def step(self, action):
        if self.world is None or self._request is None:
            raise RuntimeError("call reset() before step() (and again after the episode ends)")
        a = np.asarray(action, dtype=float)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got {a.shape}")
        obs = self._request.observation
        provision = batch_provision(a, obs.n_users, self.n_max, obs.p_total_w, self.action_mapping)
        return self.step_provision(provision)

    def step_provision(self, provision):
        """:meth:`step` with the decision given as a :class:`~sim.decisions.Provision` for the pending users."""
        if self.world is None or self._request is None:
            raise RuntimeError("call reset() before step_provision() (and again after the episode ends)")
        obs = self._request.observation
        provision.check(obs, "step_provision")
        self._request.decided.succeed(provision)
        self._steps += 1
        self._request = self.world.advance()
        records = self.world.user_records
        left = records[self._departed:]
        self._departed = len(records)
        reward = float(sum(r.utility for r in left)) / self.world.n_users
        terminated = self._request is None
        truncated = not terminated and self.max_steps is not None and self._steps >= self.max_steps
        info = self._info()
        info["left"] = len(left)
        if terminated:
            info["summary"] = self.world.result().summary
        self._last = {"provision": provision, "observation": obs, "reward": reward, "left": len(left)}
        return self._vector(), reward, terminated, truncated, info

    def render(self):
        if self.render_mode != "ansi":
            return None
        if not self._last:
            return "no step yet\n"
        obs, d = self._last["observation"], self._last["provision"]
        lines = [f"t={obs.time_s:.1f} s {obs.masp}: {obs.n_users} users, {obs.queue_length} waiting; "
                 f"reward {self._last['reward']:.3f}, {self._last['left']} left"]
        for i in range(obs.n_users):
            lines.append(f"  user {int(obs.user_ids[i])}: round {int(obs.rounds_done[i]) + 1} "
                         f"best {obs.best_scores[i]:.2f}/{obs.thresholds[i]:.2f} -> N={int(d.n_images[i])} "
                         f"P={d.power_w[i]:.3f} W")
        return "\n".join(lines) + "\n"


def make_training_env(scenario: Scenario):
    """The environment the scenario's learners train on: ``training.env`` (``world`` or ``epoch``) with its settings."""
    t = scenario.training
    if t.env == "world":
        return WorldEnv(scenario, action_mapping=t.action_mapping)
    from sim.rl.provisioning_env import make_env

    return make_env(scenario)


def make_world_vec_env(scenario: Scenario, n_envs: int = 4, seed: int = 0, subprocesses: bool = False, **kwargs):
    """``n_envs`` copies of :class:`WorldEnv` as a stable-baselines3 ``VecEnv`` (the learn extra).

    ``DummyVecEnv`` by default (one process; the world is Python-bound), ``SubprocVecEnv`` with
    ``subprocesses=True``. Copy ``i`` is seeded ``seed + i``; ``kwargs`` go to :class:`WorldEnv`.
    """
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    return make_vec_env(WorldEnv, n_envs=int(n_envs), seed=int(seed), env_kwargs={"scenario": scenario, **kwargs},
                        vec_env_cls=SubprocVecEnv if subprocesses else DummyVecEnv)


def episode_return(env: WorldEnv, seed: int, decide) -> tuple[float, dict[str, float]]:
    """Return of one episode with ``decide(env) -> Provision`` (e.g. an agent on ``env.current_observation``).

    Also returns the run's summary; the return equals ``summary["mean_utility"]``.
    """
    env.reset(seed=seed)
    total = 0.0
    while True:
        _, reward, terminated, truncated, info = env.step_provision(decide(env))
        total += reward
        if terminated or truncated:
            return total, info.get("summary", {})


__all__ = ["ENV_ID", "TRAINING_SEED_BASE", "WorldEnv", "episode_return", "make_training_env", "make_world_vec_env"]
