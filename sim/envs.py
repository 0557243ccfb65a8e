"""Gymnasium environments built from the same parts as the SimPy world.

:class:`ProvisioningEnv` (registered as ``sim/Provisioning-v0``) is one MASP's
provisioning problem as a fast RL environment: every step is one decision
epoch for ``Q`` freshly drawn users. The outcome of a decision is simulated with
the world's own code -- :class:`~sim.channel.Channel` for shadowing, fading, BER
and transmission time, :class:`~sim.quality.QualityModel` for generation scores
and bit-error damage, :func:`sim.qoe.utility` for eq. 22a -- but without
rendering or assessing images (the quality model's damage part stands in for the
assessor), which is what makes it cheap.

Two module-level functions are shared with agents that run inside the world:

* :func:`observation_vector` turns the world's
  :class:`~agents.base.ProvisioningObservation` into the env's observation, so a
  policy trained here sees the same features in the world;
* :func:`action_to_provision` turns an action in ``[-1, 1]^(2Q)`` into a
  :class:`~agents.base.Provision`.

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
from functools import lru_cache
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agents.base import Provision, ProvisioningObservation
from sim.backends import build_channel, build_quality_model
from sim.channel import ber_awgn
from sim.config import Scenario
from sim.prompting.prompts import load_prompts
from sim.qoe import QoEParams, utility
from sim.quality import N_STRATEGIES, prompt_complexity
from sim.seeding import RandomStreams

ENV_ID = "sim/Provisioning-v0"

#: Features per user in :func:`observation_vector` (complexity, distance, threshold, mean SNR).
FEATURES_PER_USER = 4
#: Box bounds of the per-user features and of P_total (values are clipped into them).
_USER_LOW = np.array([0.0, 0.0, 0.0, -2.0], dtype=np.float32)
_USER_HIGH = np.array([1.0, 4.0, 1.0, 3.0], dtype=np.float32)
_P_TOTAL_HIGH = 100.0
#: Images rendered to measure the typical encoded image size (see :func:`typical_image_bits`).
_SIZE_SAMPLES = 16

ACTION_MAPPINGS = ("feasible", "penalised")


# ---------------------------------------------------------------------------
# shared helpers (used by agents running inside the world as well)


def observation_vector(obs: ProvisioningObservation, scenario: Scenario, n_users: int | None = None) -> np.ndarray:
    """The env's observation for the users of ``obs`` (float32, shape ``(4 * Q + 1,)``).

    User-major layout, for user ``i`` (in the order of ``obs``, which is the GPU
    queue order), ``obs[4 i : 4 i + 4]`` is

    ====  ==============================  ======================================
    k     feature                         normalisation (Box bounds)
    ====  ==============================  ======================================
    0     prompt complexity               as is, in [0, 1]
    1     distance to the MASP            ``d / users.distance_m.high`` [0, 4]
    2     quality threshold               ``threshold / 10`` [0, 1]
    3     mean SNR at 1 W (dB)            ``mean_snr_db_at_1w / 100`` [-2, 3]
    ====  ==============================  ======================================

    and the last entry is ``P_total`` in watts ([0, 100]). Values are clipped into
    the bounds. The prompt's random quality effect is not observed (nobody can
    see it before generating). ``n_users`` pads a smaller batch with zero blocks
    (the world may decide for fewer than ``max_users_per_epoch`` users).
    """
    q = obs.n_users
    n = q if n_users is None else int(n_users)
    if q > n:
        raise ValueError(f"observation has {q} users, more than the {n} the vector holds")
    block = np.zeros((n, FEATURES_PER_USER), dtype=np.float64)
    if q:
        block[:q, 0] = obs.complexities
        block[:q, 1] = np.asarray(obs.distances_m, dtype=float) / scenario.users.distance_m.high
        block[:q, 2] = np.asarray(obs.thresholds, dtype=float) / 10.0
        block[:q, 3] = np.asarray(obs.mean_snr_db_at_1w, dtype=float) / 100.0
        block[:q] = np.clip(block[:q], _USER_LOW, _USER_HIGH)
    p_total = np.clip(float(obs.p_total_w), 0.0, _P_TOTAL_HIGH)
    return np.concatenate([block.ravel(), [p_total]]).astype(np.float32)


def observation_space(n_users: int) -> spaces.Box:
    """The Box :func:`observation_vector` lives in, for ``n_users`` users."""
    low = np.concatenate([np.tile(_USER_LOW, n_users), [0.0]]).astype(np.float32)
    high = np.concatenate([np.tile(_USER_HIGH, n_users), [_P_TOTAL_HIGH]]).astype(np.float32)
    return spaces.Box(low, high, dtype=np.float32)


def action_to_provision(action, n_max: int, p_total_w: float, mapping: str = "feasible") -> Provision:
    """Map an action in ``[-1, 1]^(2Q)`` (clipped into it) to a :class:`Provision`.

    The first ``Q`` entries give ``N_i = 1 + round((a_i + 1) / 2 * (N_max - 1))``.
    The last ``Q`` give the power:

    * ``"feasible"``: ``P_i = P_total * exp(2 a_i) / sum_j exp(2 a_j)`` (always
      sums to ``P_total``; equal split at ``a = 0``);
    * ``"penalised"`` (the paper's raw action): ``P_i = (a_i + 1) / 2 * P_total``;
      the sum may exceed ``P_total``, and eq. 22's power penalty then applies.
    """
    if mapping not in ACTION_MAPPINGS:
        raise ValueError(f"mapping must be one of {', '.join(ACTION_MAPPINGS)}, got {mapping!r}")
    a = np.asarray(action, dtype=float).ravel()
    if a.size % 2 or a.size == 0:
        raise ValueError(f"action must have 2 Q entries, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise ValueError("action must be finite")
    a = np.clip(a, -1.0, 1.0)
    q = a.size // 2
    n = 1 + np.rint((a[:q] + 1.0) / 2.0 * (int(n_max) - 1)).astype(int)
    if mapping == "feasible":
        z = 2.0 * a[q:]
        w = np.exp(z - z.max())
        power = float(p_total_w) * w / w.sum()
    else:
        power = (a[q:] + 1.0) / 2.0 * float(p_total_w)
    return Provision(np.clip(n, 1, int(n_max)), power)


def received_scores(
    quality,
    channel,
    generation_scores: np.ndarray,
    power_w,
    distance_m,
    shadowing_db,
    fading_gains: np.ndarray,
    uniforms: np.ndarray,
    image_bits: float,
    block_fading: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Received scores and BERs of a round's images: the one damage step of both gymnasium envs.

    Arrays broadcast (``ProvisioningEnv`` passes users x images, ``PromptEnv`` one
    user's images). BER from ``Channel.ber_given_shadowing`` (or ``ber_awgn`` of the instantaneous
    SNR under block fading); an image is undecodable (score 0) when its uniform
    draw is below ``QualityModel.p_undecodable``, else it keeps
    ``generation score * QualityModel.retention``.
    """
    gen = np.asarray(generation_scores, dtype=float)
    if block_fading:
        ber = np.asarray(ber_awgn(channel.snr(power_w, distance_m, shadowing_db, np.asarray(fading_gains))), dtype=float)
    else:
        ber = np.broadcast_to(np.asarray(channel.ber_given_shadowing(power_w, distance_m, shadowing_db), dtype=float), gen.shape)
    undecodable = np.asarray(uniforms) < quality.p_undecodable(ber, image_bits)
    return np.where(undecodable, 0.0, gen * quality.retention(ber, image_bits)), ber


@lru_cache(maxsize=8)
def _measure_image_bits(size: int, image_format: str, jpeg_quality: int, prompt_set: str) -> float:
    from sim.generation.surrogate import render_encoded

    pool = load_prompts(None if prompt_set == "default" else prompt_set)
    step = max(1, len(pool) // _SIZE_SAMPLES)
    texts = [pool[(k * step) % len(pool)].text for k in range(_SIZE_SAMPLES)]
    sizes = [len(render_encoded(t, k, size, image_format, jpeg_quality)[0]) * 8 for k, t in enumerate(texts)]
    return float(np.mean(sizes))


def typical_image_bits(scenario: Scenario) -> float:
    """Mean encoded size (bits) of a surrogate image at the scenario's image settings.

    Measured once per (size, format, JPEG quality, prompt set) by rendering 16
    images of prompts spread over the prompt set with
    :func:`sim.generation.surrogate.render_encoded` (cached; ~0.1 s). The world
    uses each image's own size; the env and the oracle use this one number.
    """
    g = scenario.generator
    return _measure_image_bits(g.image_size, g.image_format, g.jpeg_quality, scenario.users.prompt_set)


def gpu_completion_times(n_images, gpus: int, inference_time_s: float) -> np.ndarray:
    """Completion time of every user's last image on a FIFO queue of ``gpus`` GPUs.

    Images are queued user by user (the world's order); image ``j`` (0-based,
    over the whole queue) finishes at ``(j // gpus + 1) * T``. A user with no
    image finishes at 0.
    """
    n = np.asarray(n_images, dtype=int)
    last = np.cumsum(n) - 1
    return np.where(n > 0, (last // int(gpus) + 1) * float(inference_time_s), 0.0)


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

    **Reward.** ``sim.qoe.utility(...).total``: eq. 22a,
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
        scenario: Scenario,
        n_users: int | None = None,
        episode_length: int = 32,
        action_mapping: str = "feasible",
        strategy: int = 6,
        image_bits: float | None = None,
        render_mode: str | None = None,
    ):
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
        self.gpus = int(masp.gpus)
        self.n_max = int(scenario.service.max_images_per_round)
        self.inference_time_s = float(scenario.generator.inference_time_s)
        self.block_fading = scenario.channel.ber_model == "block_fading"
        self.channel = build_channel(scenario)
        self.quality = build_quality_model(scenario)
        self.qoe_params = QoEParams(**scenario.qoe.model_dump())
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
        qm, ch, params = self.quality, self.channel, self.qoe_params
        q = obs.n_users
        n = provision.n_images
        requested = provision.power_w
        total = float(requested.sum())
        violation = total > self.p_total_w * (1 + 1e-9)
        power = requested * (self.p_total_w / total) if violation else requested
        gen_done = gpu_completion_times(n, self.gpus, self.inference_time_s)
        k_max = self.n_max
        # One stream per component and epoch; every user draws N_max images' worth, of which the
        # first N_i are used, so a decision never shifts anyone's draws (common random numbers).
        shadow = np.asarray(ch.draw_shadowing_db(q, self._streams.rng("shadowing", epoch)), dtype=float)
        fading = np.asarray(ch.draw_fading_gain((q, k_max), self._streams.rng("fading", epoch)), dtype=float)
        u_bits = self._streams.rng("bit_errors", epoch).random((q, k_max))
        g_rng = self._streams.rng("generation", epoch)
        gen = np.stack([qm.sample_scores(obs.prompts[i], self.strategy, g_rng, k_max, key=key) for i in range(q)])
        d = np.asarray(obs.distances_m, dtype=float)
        snr = np.asarray(ch.snr(power[:, None], d[:, None], shadow[:, None], fading), dtype=float)
        received, ber = received_scores(qm, ch, gen, power[:, None], d[:, None], shadow[:, None], fading, u_bits,
                                        self.image_bits, self.block_fading)
        with np.errstate(divide="ignore"):
            tx = np.asarray(ch.transmission_time_s(self.image_bits, snr), dtype=float)
        tx = np.where(np.isfinite(tx) & (power[:, None] > 0), tx, 0.0)  # the world never waits for an infinite one
        # FIFO over the whole queue: image j (0-based) leaves the GPUs at (j // gpus + 1) T
        first = np.concatenate([[0], np.cumsum(n)[:-1]])
        done = ((first[:, None] + np.arange(k_max)) // self.gpus + 1) * self.inference_time_s
        used = np.arange(k_max)[None, :] < n[:, None]
        best = np.where(used, received, -np.inf).max(axis=1)
        best = np.where(n > 0, best, 0.0)
        latency = np.where(used, done + tx, 0.0).max(axis=1)
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
        """:meth:`step` with the decision given as a :class:`~agents.base.Provision` (no action mapping).

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


def register_envs() -> None:
    """Register ``sim/Provisioning-v0`` with gymnasium (idempotent)."""
    if ENV_ID not in gym.envs.registry:
        gym.register(id=ENV_ID, entry_point="sim.envs:ProvisioningEnv")


register_envs()

__all__ = [
    "ACTION_MAPPINGS",
    "ENV_ID",
    "ProvisioningEnv",
    "action_to_provision",
    "gpu_completion_times",
    "observation_space",
    "received_scores",
    "observation_vector",
    "register_envs",
    "typical_image_bits",
]
