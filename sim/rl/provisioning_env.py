"""``sim/Provisioning-v0``: the paper's one-epoch provisioning problem as a gymnasium environment.

:class:`ProvisioningEnv` is one MASP's provisioning problem as a fast RL
environment: every step is one decision epoch for ``Q`` freshly drawn users.
The outcome of a decision is simulated with the world's own models and round
rules -- :class:`~sim.model.service.ServiceModels` (the channel for shadowing,
fading, BER and transmission time, the quality model for generation scores and
bit-error damage) and :mod:`sim.model.service` (budget, GPU queue, BER model,
damage), :func:`sim.model.qoe.utility` for eq. 22a -- but without rendering or
assessing images (the quality model's damage part stands in for the assessor),
which is what makes it cheap. Observations and actions are in :mod:`sim.rl.features`.

>>> from sim.config import parse_scenario
>>> env = ProvisioningEnv(parse_scenario({"name": "doc"}), episode_length=2)
>>> obs, info = env.reset(seed=0)
>>> obs.shape, env.action_space.shape
((13,), (6,))
>>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
>>> len(info["users"]["n_images"]), terminated, truncated
(3, False, False)
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim.backends import build_service_models
from sim.config import Scenario, default_scenario
from sim.decisions import Provision, ProvisioningObservation
from sim.generation.surrogate import typical_image_bits
from sim.model import service
from sim.model.qoe import utility
from sim.model.quality import N_STRATEGIES, prompt_complexity
from sim.prompting.prompts import load_prompts
from sim.rl.features import (
    ACTION_MAPPINGS,
    action_to_provision,
    observation_space,
    observation_vector,
)
from sim.rl.registration import PROVISIONING_ENV_ID as ENV_ID
from sim.seeding import RandomStreams

# ---------------------------------------------------------------------------
# the environment


class ProvisioningEnv(gym.Env):
    """One MASP deciding images and transmit power for ``Q`` users per decision epoch.

    **Description.** Every step is one decision epoch of the world's MASP: ``Q``
    fresh users arrive together (prompt drawn from the scenario's prompt set,
    threshold and distance drawn uniformly from ``users.threshold`` and
    ``users.distance_m``), the agent chooses ``(N_i, P_i)`` for each, and the
    epoch's first service round is simulated with the world's models: ``N_i``
    generation scores from ``QualityModel.sample_scores`` under a fixed prompt
    strategy, one log-normal shadowing draw per user, BER from
    ``Channel.ber_given_shadowing`` (or per image from the instantaneous SNR when
    the scenario's ``ber_model`` is ``block_fading``, as in the world), each image
    undecodable with ``QualityModel.p_undecodable`` (score 0) and otherwise
    scoring ``generation score * QualityModel.retention``; the user keeps the
    best. Images queue FIFO on the MASP's GPUs (user by user) for
    ``generator.inference_time_s`` each and are sent as soon as generated; a
    user's latency is its last received image (generation + transmission time at
    the image's instantaneous SNR with a Nakagami draw).

    **Observation space.** ``Box(float32, (4 Q + 1,))`` from
    :func:`observation_vector`:

    ============  ==========================================  ===========
    index         observation                                 bounds
    ============  ==========================================  ===========
    ``4i + 0``    prompt complexity of user ``i``             [0, 1]
    ``4i + 1``    distance / ``users.distance_m.high``        [0, 4]
    ``4i + 2``    quality threshold / 10                      [0, 1]
    ``4i + 3``    mean SNR at 1 W (dB) / 100                  [-2, 3]
    ``4Q``        ``P_total`` (W)                             [0, 100]
    ============  ==========================================  ===========

    The prompt's random quality effect and the shadowing realisation are hidden.

    **Action space.** ``Box([-1, 1], (2 Q,))``: the first ``Q`` entries are the
    images ``N_i = 1 + round((a + 1) / 2 (N_max - 1))``, the last ``Q`` the power
    (see :func:`action_to_provision`): ``action_mapping="feasible"`` splits
    ``P_total`` by a softmax of ``2 a`` (always feasible), ``"penalised"`` gives
    ``P_i = (a_i + 1) / 2 P_total`` and breaking the budget costs eq. 22's
    penalty ``Q rho`` (transmission then uses the powers scaled down to the
    budget, as in the world; the cost uses the requested powers).

    **Reward.** ``sim.model.qoe.utility(...).total``: eq. 22a,
    ``sum_i (eta_q QoE_i - eta_c N_i (c_zeta + P_i)) - J rho - Q rho [sum P > P_total]``.

    **Starting state.** ``reset(seed=s)`` rebuilds every random stream from
    ``RandomStreams(s)`` (users, generation, shadowing, fading, bit errors and
    the per-episode prompt-effect key); without a seed the root seed is drawn
    from the env's ``np_random``. The first observation is the first epoch's users.

    **Episode end.** Never terminated; truncated after ``episode_length`` steps.

    **Arguments.** ``scenario`` (a :class:`~sim.config.Scenario`; its first MASP's
    GPUs, ``p_total_w`` and ``max_users_per_epoch``, the channel, quality, QoE
    and service settings are used); ``n_users`` (Q, default
    ``masps[0].max_users_per_epoch``); ``episode_length`` (32);
    ``action_mapping`` (``"feasible"`` or ``"penalised"``); ``strategy`` (prompt
    strategy 0-6 assumed for generation, default 6); ``image_bits`` (encoded
    image size in bits, default :func:`typical_image_bits`); ``render_mode``
    (``None`` or ``"ansi"``).

    **Info.** ``users``: per-user arrays ``n_images``, ``power_w`` (requested),
    ``best_score``, ``threshold``, ``satisfied``, ``latency_s``, ``ber``,
    ``qoe``, ``cost``, ``utility`` (before penalties); ``penalty``,
    ``power_violation``, ``violations``.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        scenario: Scenario | None = None,
        n_users: int | None = None,
        episode_length: int = 32,
        action_mapping: str = "feasible",
        strategy: int = 6,
        image_bits: float | None = None,
        render_mode: str | None = None,
    ):
        if scenario is None:  # gym.make(ENV_ID) with no arguments: every default (sim.config.default_scenario)
            scenario = default_scenario()
        if not isinstance(scenario, Scenario):
            raise TypeError(f"scenario must be a sim.config.Scenario, got {type(scenario).__name__}")
        if action_mapping not in ACTION_MAPPINGS:
            raise ValueError(f"action_mapping must be one of {', '.join(ACTION_MAPPINGS)}, got {action_mapping!r}")
        if not 0 <= int(strategy) < N_STRATEGIES:
            raise ValueError(f"strategy must be in 0..{N_STRATEGIES - 1}, got {strategy}")
        if int(episode_length) < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.scenario = scenario
        masp = scenario.masps[0]
        self.n_users = int(n_users if n_users is not None else masp.max_users_per_epoch)
        if self.n_users < 1:
            raise ValueError(f"n_users must be >= 1, got {n_users}")
        self.episode_length = int(episode_length)
        self.action_mapping = action_mapping
        self.strategy = int(strategy)
        self.render_mode = render_mode
        self.p_total_w = float(masp.p_total_w)
        self.n_max = int(scenario.service.max_images_per_round)
        #: The models every round runs on (shared with agents evaluated here, such as the oracle).
        self.models = build_service_models(scenario)
        self.channel = self.models.channel
        self.quality = self.models.quality
        self.qoe_params = self.models.qoe
        self.image_bits = float(image_bits) if image_bits is not None else typical_image_bits(scenario)
        if not (math.isfinite(self.image_bits) and self.image_bits > 0):
            raise ValueError(f"image_bits must be a positive number, got {image_bits!r}")
        pool = load_prompts(None if scenario.users.prompt_set == "default" else scenario.users.prompt_set)
        self._prompts = [p.text for p in pool]
        self._complexities = np.array([prompt_complexity(t) for t in self._prompts])

        self.observation_space = observation_space(self.n_users)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2 * self.n_users,), dtype=np.float32)

        self._streams: RandomStreams | None = None
        self._key = 0
        self._t = 0
        self._obs: ProvisioningObservation | None = None
        self._last_info: dict[str, Any] = {}

    # -- users ---------------------------------------------------------------

    def _draw_observation(self, epoch: int) -> ProvisioningObservation:
        rng = self._streams.rng("users", epoch)
        cfg = self.scenario.users
        q = self.n_users
        idx = rng.integers(len(self._prompts), size=q)
        thresholds = rng.uniform(cfg.threshold.low, cfg.threshold.high, size=q)
        distances = rng.uniform(cfg.distance_m.low, cfg.distance_m.high, size=q)
        return ProvisioningObservation(
            time_s=float(epoch),
            masp=self.scenario.masps[0].name,
            p_total_w=self.p_total_w,
            max_images=self.n_max,
            user_ids=np.arange(epoch * q, (epoch + 1) * q),
            prompts=tuple(self._prompts[i] for i in idx),
            complexities=self._complexities[idx].astype(float),
            distances_m=distances,
            thresholds=thresholds,
            mean_snr_db_at_1w=np.asarray(self.channel.mean_snr_db(1.0, distances), dtype=float),
            rounds_done=np.zeros(q, dtype=int),
            best_scores=np.zeros(q),
        )

    @property
    def current_observation(self) -> ProvisioningObservation:
        """The world-style observation of the users the next :meth:`step` decides for."""
        if self._obs is None:
            raise RuntimeError("call reset() first")
        return self._obs

    # -- gymnasium API ---------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        root = int(seed) if seed is not None else int(self.np_random.integers(2**31))
        self._streams = RandomStreams(root)
        self._key = self._streams.integer_seed("prompt_effect")
        self._t = 0
        self._obs = self._draw_observation(0)
        self._last_info = {}
        return observation_vector(self._obs, self.scenario), {"root_seed": root}

    def simulate(self, obs: ProvisioningObservation, provision: Provision, epoch: int, key: int | None = None):
        """Simulated utility breakdown and per-user outcome of ``provision`` for the users of ``obs``.

        Draws come from the streams keyed by ``epoch`` (and user), so the same
        epoch gives the same draws whatever is decided (common random numbers).
        ``key`` is the prompt-effect key (default: this episode's); vary it to
        average over prompts' random effects.
        """
        key = self._key if key is None else int(key)
        models = self.models
        qm, ch, params = models.quality, models.channel, models.qoe
        q = obs.n_users
        n = provision.n_images
        requested = provision.power_w
        power, _ = service.transmitted_powers(requested, self.p_total_w)
        gen_done = models.gpu_completion_times(n)
        k_max = self.n_max
        # One stream per component and epoch; every user draws N_max images' worth, of which the
        # first N_i are used, so a decision never shifts anyone's draws (common random numbers).
        shadow = np.asarray(ch.draw_shadowing_db(q, self._streams.rng("shadowing", epoch)), dtype=float)
        fading = np.asarray(ch.draw_fading_gain((q, k_max), self._streams.rng("fading", epoch)), dtype=float)
        u_bits = self._streams.rng("bit_errors", epoch).random((q, k_max))
        g_rng = self._streams.rng("generation", epoch)
        gen = np.stack([qm.sample_scores(obs.prompts[i], self.strategy, g_rng, k_max, key=key) for i in range(q)])
        d = np.asarray(obs.distances_m, dtype=float)
        best, latency, ber = service.round_outcomes(models, n, power, d, shadow, fading, gen, u_bits, self.image_bits)
        ber_mean = np.where(n > 0, ber[:, 0], np.nan)
        breakdown = utility(best, obs.thresholds, latency, n, requested, self.p_total_w, params)
        users = {
            "n_images": n.copy(),
            "power_w": requested.copy(),
            "best_score": best,
            "threshold": np.asarray(obs.thresholds, dtype=float).copy(),
            "satisfied": best >= obs.thresholds,
            "latency_s": latency,
            "generation_done_s": gen_done,
            "ber": ber_mean,
            "qoe": breakdown.qoe,
            "cost": breakdown.cost,
            "utility": breakdown.per_user,
        }
        return breakdown, users

    def step(self, action):
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        return self.step_provision(action_to_provision(action, self.n_max, self.p_total_w, self.action_mapping))

    def step_provision(self, provision: Provision):
        """:meth:`step` with the decision given as a :class:`~sim.decisions.Provision` (no action mapping).

        This is how agents that decide in the world's terms (static, random, the
        oracle) are evaluated on exactly the episodes the learners see.
        """
        if self._obs is None:
            raise RuntimeError("call reset() before step_provision()")
        provision.check(self._obs, "step_provision")
        breakdown, users = self.simulate(self._obs, provision, self._t)
        info = {
            "users": users,
            "penalty": breakdown.penalty,
            "power_violation": breakdown.power_violation,
            "violations": breakdown.violations,
            "epoch": self._t,
        }
        self._last_info = info
        self._t += 1
        truncated = self._t >= self.episode_length
        self._obs = self._draw_observation(self._t)
        return observation_vector(self._obs, self.scenario), float(breakdown.total), False, truncated, info

    def render(self):
        if self.render_mode != "ansi":
            return None
        if not self._last_info:
            return "no step yet\n"
        u = self._last_info["users"]
        lines = [f"epoch {self._last_info['epoch']}: penalty {self._last_info['penalty']:.2f}"]
        for i in range(len(u["n_images"])):
            lines.append(
                f"  user {i}: N={int(u['n_images'][i])} P={u['power_w'][i]:.3f} W best={u['best_score'][i]:.2f}"
                f" thr={u['threshold'][i]:.2f} qoe={u['qoe'][i]:.3f} cost={u['cost'][i]:.2f}"
            )
        return "\n".join(lines) + "\n"


def make_env(scenario: Scenario) -> ProvisioningEnv:
    """The environment ``python -m sim train`` trains on: the scenario with its ``training`` settings."""
    t = scenario.training
    return ProvisioningEnv(
        scenario, episode_length=t.episode_length, action_mapping=t.action_mapping, strategy=t.strategy
    )


__all__ = ["ENV_ID", "ProvisioningEnv", "make_env"]
