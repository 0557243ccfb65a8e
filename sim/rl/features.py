"""Observations and actions of ``sim/Provisioning-v0``, shared with the agents that run trained policies in the world.

* :func:`observation_vector` turns the world's
  :class:`~sim.decisions.ProvisioningObservation` into the env's observation, so a
  policy trained in the env sees the same features in the world;
* :func:`action_to_provision` turns an action in ``[-1, 1]^(2Q)`` into a
  :class:`~sim.decisions.Provision`.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from sim.config import Scenario
from sim.decisions import Provision, ProvisioningObservation

#: Features per user in :func:`observation_vector` (complexity, distance, threshold, mean SNR).
FEATURES_PER_USER = 4
#: Box bounds of the per-user features and of P_total (values are clipped into them).
_USER_LOW = np.array([0.0, 0.0, 0.0, -2.0], dtype=np.float32)
_USER_HIGH = np.array([1.0, 4.0, 1.0, 3.0], dtype=np.float32)
_P_TOTAL_HIGH = 100.0
ACTION_MAPPINGS = ("feasible", "penalised")


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
    n = obs.n_users if n_users is None else int(n_users)
    block = _user_block(obs, scenario, n)
    p_total = np.clip(float(obs.p_total_w), 0.0, _P_TOTAL_HIGH)
    return np.concatenate([block.ravel(), [p_total]]).astype(np.float32)


def _user_block(obs: ProvisioningObservation, scenario: Scenario, n_users: int) -> np.ndarray:
    """The four per-user features of :func:`observation_vector`, clipped, padded with zero rows to ``n_users``."""
    q = obs.n_users
    if q > n_users:
        raise ValueError(f"observation has {q} users, more than the {n_users} the vector holds")
    block = np.zeros((n_users, FEATURES_PER_USER), dtype=np.float64)
    if q:
        block[:q, 0] = obs.complexities
        block[:q, 1] = np.asarray(obs.distances_m, dtype=float) / scenario.users.distance_m.high
        block[:q, 2] = np.asarray(obs.thresholds, dtype=float) / 10.0
        block[:q, 3] = np.asarray(obs.mean_snr_db_at_1w, dtype=float) / 100.0
        block[:q] = np.clip(block[:q], _USER_LOW, _USER_HIGH)
    return block


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


def batch_provision(action, n_users: int, n_max: int, p_total_w: float, mapping: str = "feasible") -> Provision:
    """:func:`action_to_provision` for the first ``n_users`` users of an action sized for more.

    A smaller batch than the policy's ``Q`` uses the first users' entries; with
    the ``feasible`` mapping the padded users' share of the power is given back
    to the real ones (the powers still sum to ``P_total``).
    """
    full = action_to_provision(action, n_max, p_total_w, mapping)
    if n_users > len(full.n_images):
        raise ValueError(f"the action decides for at most {len(full.n_images)} users, got {n_users}")
    if n_users == len(full.n_images):
        return full
    n, power = full.n_images[:n_users], full.power_w[:n_users]
    if mapping == "feasible" and power.sum() > 0:
        power = power * (float(p_total_w) / power.sum())
    return Provision(n, power)


#: Features per user in :func:`world_observation_vector`.
WORLD_FEATURES_PER_USER = 8
#: Their Box bounds (values are clipped into them): complexity, distance, threshold, mean SNR at 1 W,
#: rounds done, best score so far, time waited, present (1) or padding (0).
_WORLD_LOW = np.concatenate([_USER_LOW, [0.0, 0.0, 0.0, 0.0]]).astype(np.float32)
_WORLD_HIGH = np.concatenate([_USER_HIGH, [1.0, 1.0, 10.0, 1.0]]).astype(np.float32)
#: Bounds of the MASP block: users waiting / Q, GPU backlog / (Q N_max), P_total (W).
_MASP_LOW = np.array([0.0, 0.0, 0.0], dtype=np.float32)
_MASP_HIGH = np.array([100.0, 100.0, _P_TOTAL_HIGH], dtype=np.float32)


def world_observation_vector(obs: ProvisioningObservation, scenario: Scenario, n_users: int) -> np.ndarray:
    """The observation of ``sim/World-v0`` for the users of ``obs`` (float32, ``8 Q + 3``).

    Per user ``i`` (``obs[8 i : 8 i + 8]``, padded with zero blocks to ``Q`` users):
    complexity; distance / ``users.distance_m.high``; threshold / 10; mean SNR at
    1 W (dB) / 100; rounds done / ``service.max_rounds``; best score so far / 10;
    time waited / ``qoe.max_latency_s``; 1 for a user, 0 for padding (the first
    four are :func:`observation_vector`'s). Then the MASP: users waiting besides
    these / Q; images at its GPUs / (Q N_max) (0 in today's world, whose MASPs
    run one epoch at a time); ``P_total`` (W). Values are clipped into :func:`world_observation_space`.
    """
    q = obs.n_users
    block = np.zeros((n_users, WORLD_FEATURES_PER_USER), dtype=np.float64)
    block[:, :FEATURES_PER_USER] = _user_block(obs, scenario, n_users)  # the features sim/Provisioning-v0 observes
    if q:
        block[:q, 4] = np.asarray(obs.rounds_done, dtype=float) / scenario.service.max_rounds
        block[:q, 5] = np.asarray(obs.best_scores, dtype=float) / 10.0
        block[:q, 6] = np.asarray(obs.waited_s, dtype=float) / scenario.qoe.max_latency_s
        block[:q, 7] = 1.0
        block[:q] = np.clip(block[:q], _WORLD_LOW, _WORLD_HIGH)
    masp = np.array([obs.queue_length / n_users, obs.gpu_backlog / (n_users * obs.max_images), obs.p_total_w])
    masp = np.clip(masp, _MASP_LOW, _MASP_HIGH)
    return np.concatenate([block.ravel(), masp]).astype(np.float32)


def world_observation_space(n_users: int) -> spaces.Box:
    """The Box :func:`world_observation_vector` lives in, for ``n_users`` users."""
    low = np.concatenate([np.tile(_WORLD_LOW, n_users), _MASP_LOW]).astype(np.float32)
    high = np.concatenate([np.tile(_WORLD_HIGH, n_users), _MASP_HIGH]).astype(np.float32)
    return spaces.Box(low, high, dtype=np.float32)


__all__ = [
    "ACTION_MAPPINGS",
    "FEATURES_PER_USER",
    "WORLD_FEATURES_PER_USER",
    "action_to_provision",
    "batch_provision",
    "observation_space",
    "observation_vector",
    "world_observation_space",
    "world_observation_vector",
]
