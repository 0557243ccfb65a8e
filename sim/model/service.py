r"""The rules of one service round: the one home of what happens between a decision and its outcome.

A provisioning decision gives user ``i`` of an epoch ``N_i`` images and a
requested transmit power ``P_i``. These functions say what that decision
becomes, and every part of the simulator that plays a round calls them: the
SimPy world (:mod:`sim.world.simulation`), the gymnasium environments
(:mod:`sim.rl`), the model-based oracle (:mod:`agents.oracle`) and the
demonstration-dataset builder (:mod:`sim.dataset.demonstrations`).

1. **Power budget** (eq. 22c): a decision breaks the budget when
   ``sum_i P_i > P_total`` (:func:`exceeds_budget`, with a relative tolerance of
   :data:`BUDGET_TOLERANCE` for rounding). The transmitter cannot exceed it, so
   the powers it *sends* with are scaled down in proportion
   (:func:`transmitted_powers`); eq. 22's penalty and the cost (eq. 24) use the
   *requested* powers.
2. **GPU queue**: images queue first come, first served, user by user in the
   order of the decision, on ``gpus`` identical GPUs taking ``T`` seconds each;
   image ``j`` of the queue (0-based) leaves the GPUs at ``(j // gpus + 1) T``
   (:func:`image_done_times`, :func:`gpu_completion_times`).
3. **Bit error rate** of one image (:func:`image_ber`): ``average_fading`` (the
   image spans many fading coherence times) is the Nakagami-averaged BER at the
   round's shadowed SNR, ``Channel.ber_given_shadowing``; ``block_fading`` (one
   fading draw holds for the whole image) is ``ber_awgn`` of the instantaneous SNR.
4. **Transmission**: an image takes ``n_bits`` over the Shannon rate
   (:func:`transmission_time_s`); with zero power nothing is sent, the time is
   infinite, and nobody waits for it (:func:`delivery_delay_s` is then 0, and
   the image arrives as bit noise: BER 1/2).
5. **Damage** in the statistical delivery mode (:func:`delivered`,
   :func:`received_scores`): an image is undecodable (score 0) with
   ``QualityModel.p_undecodable(ber, bits)``, else it keeps ``generation score *
   QualityModel.retention(ber, bits)``; the bytes mode flips real bits instead
   (:func:`sim.model.channel.flip_bits`) and lets the assessor score what
   arrives. The environments always use the statistical mode; the world uses
   the scenario's ``channel.delivery``.
6. **Utility** of the round: :func:`sim.model.qoe.utility` (eq. 22a with its
   penalties) over the epoch's users, and :func:`sim.model.qoe.user_utility` for
   one user's whole stay.

:class:`ServiceModels` bundles the models one round needs (channel, quality
model, QoE parameters, BER model, the GPU queue) so that every caller uses the
same objects; :func:`sim.backends.build_service_models` builds them from a scenario.

>>> requested = np.array([0.6, 0.6])
>>> bool(exceeds_budget(requested, 1.0)), transmitted_powers(requested, 1.0)[0].tolist()
(True, [0.5, 0.5])
>>> gpu_completion_times([2, 1, 3], gpus=2, inference_time_s=5.0).tolist()
[5.0, 10.0, 15.0]
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any
import numpy as np
from numpy.typing import ArrayLike

from sim.model.channel import Channel, ChannelModel, ber_awgn

#: Relative tolerance of the power-budget test (a sum within it of ``P_total`` is within budget).
BUDGET_TOLERANCE = 1e-9
#: How the BER of one image is set (see :func:`image_ber`).
BER_MODELS = ("average_fading", "block_fading")


def exceeds_budget(power_w: ArrayLike, p_total_w: float) -> bool:
    """Whether requested powers break the budget: ``sum P_i > P_total`` (relative tolerance 1e-9)."""
    total = float(np.add.reduce(np.asarray(power_w, dtype=float), axis=None))  # np.sum's own reduction
    return bool(total > float(p_total_w) * (1.0 + BUDGET_TOLERANCE))


def transmitted_powers(requested_w: ArrayLike, p_total_w: float) -> tuple[np.ndarray, bool]:
    """``(powers sent, budget broken)``: the requested powers, scaled down to ``P_total`` when they exceed it."""
    requested = np.asarray(requested_w, dtype=float)
    if exceeds_budget(requested, p_total_w):
        return requested * (float(p_total_w) / float(requested.sum())), True
    return requested, False


def _leaves_gpus_s(position, gpus, inference_time_s: float):
    """When the image at ``position`` (0-based, an int or an integer array) of a FIFO queue on ``gpus`` GPUs taking
    ``inference_time_s`` each leaves them: ``(position // gpus + 1) T``, the queue rule every function below uses.
    ``gpus``: an int, or an integer array that broadcasts against ``position`` (queues of different sizes)."""
    gpus = int(gpus) if isinstance(gpus, (int, np.integer)) or np.ndim(gpus) == 0 else np.asarray(gpus, dtype=int)
    return (position // gpus + 1) * float(inference_time_s)


def last_image_done_s(n_images: int, gpus: int, inference_time_s: float) -> float:
    """When the last of ``n_images`` images queued FIFO on ``gpus`` GPUs leaves them (0 with none): the latest of
    :func:`gpu_completion_times`, and a lower bound of how long the epoch's users wait for their images."""
    n = int(n_images)
    return _leaves_gpus_s(n - 1, gpus, inference_time_s) if n > 0 else 0.0


def image_done_times(n_images: ArrayLike, gpus, inference_time_s: float, k_max: int | None = None,
                     queues: ArrayLike | None = None) -> np.ndarray:
    """When each image leaves the FIFO GPU queue: shape ``(..., users, k_max)``; column ``k`` is image ``k`` of a user.

    ``n_images`` has shape ``(..., users)`` (leading axes are independent
    queues). Entries past a user's ``N_i`` images are what an ``N_i + 1``-th
    image would get if it were queued right after them (callers mask them out).
    ``queues`` (one axis of users only): how many consecutive users each independent queue holds (e.g. the
    epochs of several MASPs side by side), and then ``gpus`` may give each user its queue's GPU count.

    >>> image_done_times([2, 1, 3], 2, 1.0, queues=[2, 1]).tolist()  # queue 1: users 0-1; queue 2: user 2
    [[1.0, 1.0, 2.0], [2.0, 2.0, 3.0], [1.0, 1.0, 2.0]]
    """
    n = np.asarray(n_images, dtype=int)
    k = int(n.max(initial=0) if k_max is None else k_max)
    first = np.cumsum(n, axis=-1) - n  # images queued before each user's first
    if queues is not None:
        sizes = np.asarray(queues, dtype=int)
        if n.ndim != 1 or sizes.sum() != n.size or (sizes < 0).any():
            raise ValueError(f"queues must split the {n.shape} users into consecutive groups, got {sizes.tolist()}")
        queued = np.concatenate([[0], np.cumsum(n)])  # images of all users before user i, at [i]
        first = first - np.repeat(queued[np.cumsum(sizes) - sizes], sizes)  # less those of earlier queues
    if np.ndim(gpus):
        gpus = np.asarray(gpus, dtype=int)[..., None]
    return _leaves_gpus_s(first[..., None] + np.arange(k), gpus, inference_time_s)


def gpu_completion_times(n_images: ArrayLike, gpus: int, inference_time_s: float) -> np.ndarray:
    """When every user's last image leaves the FIFO queue of ``gpus`` GPUs (0 for a user with no image)."""
    n = np.asarray(n_images, dtype=int)
    last = np.cumsum(n, axis=-1) - 1
    return np.where(n > 0, _leaves_gpus_s(last, gpus, inference_time_s), 0.0)


def image_ber(
    channel: ChannelModel,
    ber_model: str,
    power_w: ArrayLike,
    distance_m: ArrayLike,
    shadowing_db: ArrayLike,
    fading_gain: ArrayLike,
    per_image: bool = True,
) -> np.ndarray:
    """BER of images sent with ``power_w`` (arrays broadcast; the result has the broadcast shape).

    ``per_image=False``: under ``average_fading`` (no fading in the BER) the BER without the fading gain's
    axes, which broadcasts against them (:func:`spread`)."""
    if ber_model == "block_fading":
        return np.asarray(ber_awgn(channel.snr(power_w, distance_m, shadowing_db, fading_gain)), dtype=float)
    if ber_model != "average_fading":
        raise ValueError(f"ber_model must be one of {', '.join(BER_MODELS)}, got {ber_model!r}")
    ber = np.asarray(channel.ber_given_shadowing(power_w, distance_m, shadowing_db), dtype=float)
    return spread(ber, np.shape(fading_gain)) if per_image else ber


def snr_and_image_ber(channel: ChannelModel, ber_model: str, power_w: ArrayLike, distance_m: ArrayLike,
                      shadowing_db: ArrayLike, fading_gain: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(channel.snr(...), image_ber(..., per_image=False))`` with the same arguments: the same numbers, with the
    SNR's work shared where the shipped channel can (:meth:`Channel.snr_and_ber_given_shadowing`; a subclass
    or another channel model may compute its SNR otherwise, so it gets the two calls)."""
    if ber_model == "average_fading" and type(channel) is Channel:
        return channel.snr_and_ber_given_shadowing(power_w, distance_m, shadowing_db, fading_gain)
    snr = np.asarray(channel.snr(power_w, distance_m, shadowing_db, fading_gain), dtype=float)
    return snr, image_ber(channel, ber_model, power_w, distance_m, shadowing_db, fading_gain, per_image=False)


def spread(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``values`` broadcast to ``np.broadcast_shapes(values.shape, shape)``, as a new array (e.g. each image's BER:
    its user's)."""
    values = np.asarray(values, dtype=float)
    if not (values.ndim == len(shape) and all(v in (1, s) for v, s in zip(values.shape, shape))):
        shape = np.broadcast_shapes(values.shape, shape)  # (when it only grows to ``shape``, that is ``shape``)
    if values.shape == shape:
        return values
    out = np.empty(shape)
    out[...] = values
    return out


def transmission_time_s(channel: ChannelModel, n_bits: ArrayLike, snr: ArrayLike, power_w: ArrayLike) -> np.ndarray:
    """Seconds to send ``n_bits`` at the Shannon rate of ``snr``; infinite where the power is zero."""
    # the shipped Channel silences its own division by a zero rate; another channel model may not
    with contextlib.nullcontext() if type(channel) is Channel else np.errstate(divide="ignore"):
        t = np.asarray(channel.transmission_time_s(n_bits, snr), dtype=float)
    return np.where(np.asarray(power_w, dtype=float) > 0, t, np.inf)


def delivery_delay_s(tx_time_s: ArrayLike) -> np.ndarray:
    """How long a round waits for a transmission: its time, or 0 when nothing could be sent (infinite time)."""
    t = np.asarray(tx_time_s, dtype=float)
    return np.where(np.isfinite(t), t, 0.0)


def delivered(quality, ber: ArrayLike, generation_scores: ArrayLike, uniforms: ArrayLike, image_bits: float):
    """``(received scores, decodable)`` of images after the channel in the statistical delivery mode.

    Arrays broadcast. An image is undecodable (score 0) when its uniform draw is
    below ``quality.p_undecodable(ber, image_bits)``, else it keeps
    ``generation score * quality.retention(ber, image_bits)``: the damage model
    fitted to what the bytes mode measures (docs/quality_model.md).
    """
    gen = np.asarray(generation_scores, dtype=float)
    p_undecodable, retention = quality.damage_terms(ber, image_bits)
    decodable = np.asarray(uniforms) >= p_undecodable
    return np.where(decodable, gen * retention, 0.0), decodable


def received_scores(quality, ber: ArrayLike, generation_scores: ArrayLike, uniforms: ArrayLike, image_bits: float) -> np.ndarray:
    """The scores of :func:`delivered` (what the gymnasium environments draw)."""
    return delivered(quality, ber, generation_scores, uniforms, image_bits)[0]


@dataclass(frozen=True)
class ImageOutcomes:
    """Per-image results of one decision epoch (arrays ``(..., users, k_max)``; see :func:`image_outcomes`)."""

    #: Instantaneous SNR (linear) of each image's fading draw.
    snr: np.ndarray
    ber: np.ndarray
    #: Score as received (0 when undecodable) and whether it decoded.
    received: np.ndarray
    decodable: np.ndarray
    #: When each image leaves the GPUs, and its transmission time (infinite at zero power), from the decision.
    done_s: np.ndarray
    transmission_s: np.ndarray
    #: When each image reaches its user, from the decision.
    arrival_s: np.ndarray


def image_outcomes(
    models: ServiceModels,
    n_images: ArrayLike,
    power_w: ArrayLike,
    distance_m: ArrayLike,
    shadowing_db: ArrayLike,
    fading_gains: ArrayLike,
    generation_scores: ArrayLike,
    uniforms: ArrayLike,
    image_bits: float,
    done_s: ArrayLike | None = None,
) -> ImageOutcomes:
    """Every image of one decision epoch, statistical delivery: queue, channel, damage.

    Shapes: ``n_images``, ``power_w`` (powers *sent*: see :func:`transmitted_powers`),
    ``distance_m``, ``shadowing_db`` are ``(..., users)``; ``fading_gains``,
    ``generation_scores``, ``uniforms`` are ``(..., users, k_max)`` draws for up
    to ``k_max`` images each, of which the first ``N_i`` are used (so a decision
    never shifts anyone's draws). Images queue FIFO on the GPUs user by user
    (:func:`image_done_times`), each is sent when generated
    (:func:`transmission_time_s`, :func:`delivery_delay_s`) and damaged by
    :func:`delivered`. ``done_s`` replaces the FIFO queue's times (e.g. from
    :func:`sim.model.faults.gpu_schedule` when GPUs fail).
    """
    n = np.asarray(n_images, dtype=int)
    p = np.asarray(power_w, dtype=float)[..., None]
    d = np.asarray(distance_m, dtype=float)[..., None]
    x = np.asarray(shadowing_db, dtype=float)[..., None]
    fading = np.asarray(fading_gains, dtype=float)
    ch = models.channel
    snr, ber = snr_and_image_ber(ch, models.ber_model, p, d, x, fading)
    snr, ber = np.asarray(snr, dtype=float), np.asarray(ber, dtype=float)
    received, decodable = delivered(models.quality, ber, generation_scores, uniforms, image_bits)
    ber = spread(ber, received.shape)
    done = models.image_done_times(n, fading.shape[-1]) if done_s is None else np.asarray(done_s, dtype=float)
    tx = transmission_time_s(ch, image_bits, snr, p)
    return ImageOutcomes(snr, ber, received, decodable, done, tx, done + delivery_delay_s(tx))


def round_results(n_images: ArrayLike, images: ImageOutcomes) -> tuple[np.ndarray, np.ndarray]:
    """``(best received score, round latency)`` per user: the best of its ``N_i`` images and its last arrival.

    A user without images has best score 0 and latency 0.
    """
    n = np.asarray(n_images, dtype=int)
    used = np.arange(images.received.shape[-1]) < n[..., None]
    best = np.where(n > 0, np.maximum.reduce(np.where(used, images.received, -np.inf), axis=-1, initial=-np.inf), 0.0)
    latency = np.maximum.reduce(np.where(used, images.arrival_s, 0.0), axis=-1)
    return best, latency


def round_outcomes(
    models: ServiceModels,
    n_images: ArrayLike,
    power_w: ArrayLike,
    distance_m: ArrayLike,
    shadowing_db: ArrayLike,
    fading_gains: ArrayLike,
    generation_scores: ArrayLike,
    uniforms: ArrayLike,
    image_bits: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(best received score, round latency, BER)`` of the users of one decision epoch (:func:`image_outcomes`)."""
    images = image_outcomes(models, n_images, power_w, distance_m, shadowing_db, fading_gains, generation_scores,
                            uniforms, image_bits)
    best, latency = round_results(n_images, images)
    return best, latency, images.ber


@dataclass(frozen=True)
class ServiceModels:
    """The models one service round runs on, built once per world or environment and shared with its agents.

    ``channel`` (a :class:`ChannelModel`), ``quality`` (a
    :class:`sim.model.quality.QualityModel`), ``qoe`` (the QoE, cost and
    utility constants), ``ber_model`` (:data:`BER_MODELS`), and the MASP's GPU
    queue (``gpus``, ``inference_time_s`` per image).
    """

    channel: ChannelModel
    #: A :class:`sim.model.quality.QualityModel`.
    quality: Any
    #: A :class:`sim.model.qoe.QoEParams` (QoE, cost and utility constants).
    qoe: Any
    ber_model: str = "average_fading"
    gpus: int = 1
    inference_time_s: float = 5.0

    def __post_init__(self) -> None:
        if self.ber_model not in BER_MODELS:
            raise ValueError(f"ber_model must be one of {', '.join(BER_MODELS)}, got {self.ber_model!r}")
        if int(self.gpus) < 1:
            raise ValueError(f"gpus must be >= 1, got {self.gpus}")

    def image_ber(self, power_w, distance_m, shadowing_db, fading_gain, per_image: bool = True) -> np.ndarray:
        """:func:`image_ber` with this world's channel and BER model."""
        return image_ber(self.channel, self.ber_model, power_w, distance_m, shadowing_db, fading_gain, per_image)

    def gpu_completion_times(self, n_images) -> np.ndarray:
        """:func:`gpu_completion_times` on this MASP's queue."""
        return gpu_completion_times(n_images, self.gpus, self.inference_time_s)

    def image_done_times(self, n_images, k_max: int | None = None) -> np.ndarray:
        """:func:`image_done_times` on this MASP's queue."""
        return image_done_times(n_images, self.gpus, self.inference_time_s, k_max)


__all__ = [
    "BER_MODELS",
    "BUDGET_TOLERANCE",
    "ChannelModel",
    "ImageOutcomes",
    "ServiceModels",
    "delivered",
    "delivery_delay_s",
    "exceeds_budget",
    "gpu_completion_times",
    "image_ber",
    "image_done_times",
    "image_outcomes",
    "last_image_done_s",
    "received_scores",
    "round_outcomes",
    "round_results",
    "snr_and_image_ber",
    "transmission_time_s",
    "transmitted_powers",
]
