"""Immutable event records, the trace tables built from them, and the run summary.

A run produces three kinds of record:

* :class:`ImageRecord` — one per generated image: times, the round's N and P,
  SNR, BER, bits flipped, generation and received score;
* :class:`RoundRecord` — one per service round of a user: N, P, strategy,
  best score, QoE, cost and the user's share of the epoch utility;
* :class:`UserRecord` — one per user: arrival, outcome, latency, final QoE
  and utility.

:func:`trace_frame` stacks image and round records into one event trace
(column ``record`` is ``"image"`` or ``"round"``); :func:`summarise` reduces
the user records to the metrics agents are compared on.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ImageRecord:
    user_id: int
    masp: str
    round_index: int
    image_index: int
    strategy: int
    #: The generator's seed (-1 in the statistical delivery mode, which draws scores, not images).
    generation_seed: int
    #: The round's decision: images for this user and transmit power, W.
    n_images: int
    power_w: float
    t_queued_s: float
    t_generation_start_s: float
    t_generation_end_s: float
    t_received_s: float
    generation_time_s: float
    #: ``modelled`` (the scenario's time per image) or ``measured`` (the backend's wall-clock time).
    time_source: str
    #: Generator backend's model (id or path; empty for the surrogate).
    model: str
    transmission_time_s: float
    shadowing_db: float
    fading_gain: float
    #: Instantaneous SNR of the image's fading draw, dB.
    snr_db: float
    ber: float
    n_bits: int
    bits_flipped: int
    generation_score: float
    received_score: float
    decodable: bool
    #: 1 - SSIM between sent and received image; NaN when undecodable or not measured.
    damage: float
    #: Assessor whose score this is (a fallback's name after a failure).
    assessor: str
    #: The configured assessor failed on this image (see the run log / detail).
    assessment_failed: bool
    #: Why the assessment failed (the assessor's detail; empty when it did not).
    assessment_detail: str = ""
    #: The fault that lost the image (:data:`sim.model.faults.LOSS_REASONS`); empty when it was received.
    lost: str = ""


@dataclass(frozen=True)
class RoundRecord:
    user_id: int
    masp: str
    round_index: int
    epoch: int
    strategy: int
    refined_prompt: str
    n_images: int
    power_w: float
    #: Power asked for by the agent before scaling to the budget, W.
    requested_power_w: float
    t_request_s: float
    t_decision_s: float
    t_done_s: float
    #: Mean SNR at this round's shadowing (small-scale fading averaged), dB.
    mean_snr_db: float
    ber: float
    bits_flipped: int
    undecodable: int
    best_round_score: float
    best_score: float
    threshold: float
    satisfied: bool
    latency_s: float
    qoe: float
    cost: float
    #: This user's part of the epoch utility (eq. 22a): eta_q QoE - eta_c C - its penalties.
    utility: float


@dataclass(frozen=True)
class UserRecord:
    user_id: int
    masp: str
    prompt: str
    complexity: float
    threshold: float
    distance_m: float
    arrival_s: float
    departure_s: float
    rounds: int
    images: int
    best_score: float
    satisfied: bool
    single_round_success: bool
    latency_s: float
    qoe: float
    cost: float
    utility: float
    #: Why the user left: ``served``, ``out_of_rounds`` (every round used below the threshold) or
    #: ``masp_down`` (gave up on a MASP that was down: ``faults.on_masp_down: give_up``).
    outcome: str = "served"


@dataclass(frozen=True)
class FaultRecord:
    """A fault starting or ending (``faults`` section): one row of the trace with ``record`` ``fault``."""

    t_s: float
    #: ``masp_outage``, ``gpu_failure``, ``link_blockage`` or ``assessor_outage``.
    fault: str
    #: What went down: a MASP's name, ``<masp>/gpu<k>``, ``<masp>/links`` or ``assessor``.
    target: str
    #: The MASP concerned (empty for the assessor).
    masp: str
    #: ``down`` or ``up``.
    state: str
    #: ``scheduled`` (a window of the scenario) or ``random`` (MTBF/MTTR; a window merging both is random).
    cause: str
    #: At a MASP going down: waiting users moved to another MASP, and users who gave up.
    users_moved: int = 0
    users_gave_up: int = 0


def records_frame(records: list[Any], record_type: type) -> pd.DataFrame:
    """A table with one row per record and one column per field (empty records keep the columns)."""
    columns = [f.name for f in dataclasses.fields(record_type)]
    # records hold scalars only: a shallow tuple per record (dataclasses.astuple deep-copies every field)
    return pd.DataFrame([tuple(getattr(r, c) for c in columns) for r in records], columns=columns)


#: The trace's leading columns, and the keys it is sorted by (time first).
TRACE_FIRST_COLUMNS = ("record", "t_s", "user_id", "masp", "round_index", "image_index")
TRACE_SORT_KEYS = ("t_s", "record", "user_id", "round_index", "image_index")


def _trace_columns() -> dict[str, type]:
    """The trace's columns and their Python types: its leading ones, then every image, round and fault field (a
    field two records have appears once)."""
    columns: dict[str, type] = {"record": str, "t_s": float}
    for record_type in (ImageRecord, RoundRecord, FaultRecord):
        hints = typing.get_type_hints(record_type)
        for f in dataclasses.fields(record_type):
            columns.setdefault(f.name, hints[f.name])
    first = {name: columns[name] for name in TRACE_FIRST_COLUMNS}
    return {**first, **{name: kind for name, kind in columns.items() if name not in first}}


#: Every column of the trace, in order, with its Python type (the Parquet schema of streamed traces too).
TRACE_COLUMNS = _trace_columns()


def trace_frame(images: list[ImageRecord], rounds: list[RoundRecord], faults: list[FaultRecord] = ()) -> pd.DataFrame:
    """The event trace: image, round and fault records in one table, ordered by time, in :data:`TRACE_COLUMNS`.

    A column no record of the run has is empty (``None`` for text, NaN for numbers); fault rows have no user,
    round or image, so with faults those columns hold NaN on them.
    """
    img = records_frame(images, ImageRecord).assign(record="image", t_s=lambda d: d["t_received_s"])
    rnd = records_frame(rounds, RoundRecord).assign(record="round", t_s=lambda d: d["t_done_s"])
    flt = records_frame(list(faults), FaultRecord).assign(record="fault")
    frames = [f for f in (img, rnd, flt) if len(f)]
    if not frames:
        return pd.concat([img, rnd], ignore_index=True)
    trace = pd.concat(frames, ignore_index=True)
    for name, kind in TRACE_COLUMNS.items():
        if name not in trace:
            trace[name] = pd.Series(None, index=trace.index, dtype="str" if kind is str else "float64")
    trace = trace.sort_values(list(TRACE_SORT_KEYS), kind="stable")
    return trace[list(TRACE_COLUMNS)].reset_index(drop=True)


#: Metrics reported per run, in the order of reports and ``runs.csv``.
SUMMARY_METRICS = (
    "users",
    "served_users",
    "unserved_users",
    "in_service_users",
    "mean_qoe",
    "mean_utility",
    "mean_rounds",
    "single_round_success",
    "mean_latency_s",
    "mean_images",
    "mean_best_score",
    "mean_cost",
    "undecodable_rate",
    "assessment_failures",
    "lost_images",
    "mean_ber",
    "sim_time_s",
)


#: Every finite double is a whole multiple of 2**-1074 (the smallest subnormal): :class:`ExactSum` keeps its
#: total as a Python integer in these units, so that adding, merging and rounding are exact.
_UNIT_BITS = 1074
#: Values gathered before :class:`ExactSum` folds them into its integer total (in one vectorised pass).
_FOLD_EVERY = 1 << 16


def _exact_units(values: np.ndarray) -> int:
    """The exact sum of finite doubles ``values`` in units of ``2**-1074``, as a Python integer.

    Each value is ``mantissa * 2**shift`` in those units (``np.frexp``: a 53-bit integer mantissa); the
    mantissas are split into 26/27-bit halves and summed per shift with float64 ``bincount``, which is exact
    while every partial sum stays below ``2**53`` (chunks of at most ``2**24`` values); the per-shift sums
    are then shifted and added as Python integers.
    """
    total = 0
    for start in range(0, values.size, 1 << 24):
        part = values[start:start + (1 << 24)]
        m, e = np.frexp(part)
        mant = (m * 9007199254740992.0).astype(np.int64)  # m * 2**53: an exact integer
        shift = e.astype(np.int64) + (_UNIT_BITS - 53)
        low = shift < 0  # subnormals: the mantissa is a multiple of 2**-shift
        if low.any():
            mant[low] >>= -shift[low]
            shift[low] = 0
        shifts, where = np.unique(shift, return_inverse=True)
        hi = np.bincount(where, weights=(mant >> 26).astype(np.float64), minlength=shifts.size)
        lo = np.bincount(where, weights=(mant & ((1 << 26) - 1)).astype(np.float64), minlength=shifts.size)
        for s, h, l_ in zip(shifts.tolist(), hi.tolist(), lo.tolist()):
            total += ((int(h) << 26) + int(l_)) << s
    return total


class ExactSum:
    """A running sum kept exactly, so that its mean equals ``math.fsum`` over all values added (divided by their
    count) bit for bit, however they were added (one at a time, as arrays, merged from parts, in any order).

    The total is a Python integer in units of ``2**-1074`` (every finite double is a whole number of them);
    values are gathered and folded into it in vectorised passes (:func:`_exact_units`), and the mean rounds it
    correctly once (Python's integer division is correctly rounded, as ``math.fsum`` is). Infinities are kept
    apart and follow ``math.fsum``'s rules.
    """

    __slots__ = ("_units", "_count", "_scalars", "_arrays", "_pending", "_special")

    def __init__(self) -> None:
        self._units = 0
        self._count = 0
        self._scalars: list[float] = []
        self._arrays: list[np.ndarray] = []
        self._pending = 0
        self._special: list[float] = []

    def add(self, x: float) -> None:
        """Add ``x``; NaN is skipped (as pandas' means skip it)."""
        if x != x:
            return
        self._scalars.append(x)
        self._pending += 1
        if self._pending >= _FOLD_EVERY:
            self._fold()

    def add_many(self, values) -> None:
        """Add every value of the array ``values`` (NaN skipped)."""
        a = np.asarray(values, dtype=np.float64).ravel()
        if a.size:
            self._arrays.append(a)
            self._pending += a.size
            if self._pending >= _FOLD_EVERY:
                self._fold()

    def _fold(self) -> None:
        if not self._pending:
            return
        parts = self._arrays
        if self._scalars:
            parts = parts + [np.array(self._scalars, dtype=np.float64)]
        a = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self._scalars, self._arrays, self._pending = [], [], 0
        finite = np.isfinite(a)
        if not finite.all():
            special = a[~finite]
            self._special.extend(special[special == special].tolist())  # infinities; NaN is skipped
            self._count += int((special == special).sum())
            a = a[finite]
        self._count += int(a.size)
        self._units += _exact_units(a)

    def merge(self, other: ExactSum) -> None:
        """Add everything ``other`` holds."""
        self._fold()
        other._fold()
        self._count += other._count
        self._units += other._units
        self._special.extend(other._special)

    @property
    def count(self) -> int:
        """How many values were added (NaN not counted)."""
        self._fold()
        return self._count

    @property
    def total(self) -> float:
        """The sum, correctly rounded (``math.fsum`` of the values added)."""
        self._fold()
        if self._special:
            return math.fsum(self._special)  # inf, or ValueError for inf - inf, as math.fsum
        try:
            return self._units / (1 << _UNIT_BITS)
        except OverflowError:
            raise OverflowError("intermediate overflow in fsum") from None

    @property
    def mean(self) -> float:
        """The mean of the values added (NaN when none)."""
        self._fold()
        return self.total / self._count if self._count else math.nan


@dataclass
class ImageTally:
    """Running image counts behind the summary's image metrics (kept also when image records are not).

    ``undecodable`` counts images received but not decodable (bit errors); images lost to a fault are
    counted apart, by reason, in ``lost``.
    """

    images: int = 0
    undecodable: int = 0
    assessment_failures: int = 0
    ber: ExactSum = dataclasses.field(default_factory=ExactSum)
    lost: dict[str, int] = dataclasses.field(default_factory=dict)

    def add(self, undecodable: int, assessment_failures: int, bers, lost: list[str] | None = None) -> None:
        """Count a batch of images: how many failed to decode or to be assessed, their BERs (a list or an array;
        NaN skipped) and the loss reasons of those a fault lost (one per lost image)."""
        if isinstance(bers, np.ndarray):
            self.images += bers.size
            self.ber.add_many(bers)
        else:
            self.images += len(bers)
            for b in bers:
                self.ber.add(float(b))
        self.undecodable += int(undecodable)
        self.assessment_failures += int(assessment_failures)
        for reason in lost or ():
            self.lost[reason] = self.lost.get(reason, 0) + 1

    def merge(self, other: ImageTally) -> None:
        """Add another part of the run's images (e.g. another shard's)."""
        self.images += other.images
        self.undecodable += other.undecodable
        self.assessment_failures += other.assessment_failures
        self.ber.merge(other.ber)
        for reason, n in other.lost.items():
            self.lost[reason] = self.lost.get(reason, 0) + n

    @property
    def lost_images(self) -> int:
        return sum(self.lost.values())

    @classmethod
    def of(cls, images: list[ImageRecord]) -> ImageTally:
        tally = cls()
        tally.add(sum(1 for im in images if not im.decodable and not im.lost),
                  sum(1 for im in images if im.assessment_failed), [im.ber for im in images],
                  [im.lost for im in images if im.lost])
        return tally


#: The user-record fields whose means the summary reports, with their summary names.
_USER_MEANS = {
    "qoe": "mean_qoe",
    "utility": "mean_utility",
    "rounds": "mean_rounds",
    "single_round_success": "single_round_success",
    "latency_s": "mean_latency_s",
    "images": "mean_images",
    "best_score": "mean_best_score",
    "cost": "mean_cost",
}


class UserTally:
    """Running counts and exact sums of the user records behind the summary (no record kept), so a run of any
    length summarises in constant memory and exactly as from the full list of records."""

    def __init__(self) -> None:
        self.departed = 0
        self.served = 0
        #: Users who left by outcome (``UserRecord.outcome``).
        self.outcomes: dict[str, int] = {}
        self.sums = {field: ExactSum() for field in _USER_MEANS}

    def add_columns(self, columns: dict) -> None:
        """Add users given as columns (``{field of UserRecord: sequence}``, one entry per user)."""
        self.departed += len(columns["outcome"])
        self.served += sum(map(bool, columns["satisfied"]))
        for outcome in columns["outcome"]:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        for field, total in self.sums.items():
            total.add_many(np.asarray(columns[field], dtype=np.float64))

    def merge(self, other: UserTally) -> None:
        """Add another part of the run's users (e.g. another shard's)."""
        self.departed += other.departed
        self.served += other.served
        for outcome, n in other.outcomes.items():
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
        for field, total in self.sums.items():
            total.merge(other.sums[field])

    @classmethod
    def of(cls, users: list[UserRecord]) -> UserTally:
        tally = cls()
        tally.add_columns({f.name: [getattr(u, f.name) for u in users] for f in dataclasses.fields(UserRecord)})
        return tally


def summarise(users: list[UserRecord] | UserTally, images: list[ImageRecord] | ImageTally, n_arrived: int,
              sim_time_s: float) -> dict[str, float]:
    """Run metrics. Means are over users who left (served or out of rounds); rates over images.

    ``users`` and ``images`` are the run's records or their tallies (:class:`UserTally`, :class:`ImageTally`).

    * ``served_users``: users whose best received image met their threshold;
    * ``unserved_users``: users who used every round without meeting it;
    * ``in_service_users``: arrived but not finished when the horizon ended the run;
    * ``single_round_success``: fraction of departed users served in their first round;
    * ``lost_images``: images a fault lost (``faults``; :func:`conservation` has them by reason).
    """
    people = users if isinstance(users, UserTally) else UserTally.of(users)
    tally = images if isinstance(images, ImageTally) else ImageTally.of(images)
    summary = {
        "users": int(n_arrived),
        "served_users": people.served,
        "unserved_users": int(people.departed - people.served),
        "in_service_users": int(n_arrived - people.departed),
        **{name: people.sums[field].mean for field, name in _USER_MEANS.items()},
        "undecodable_rate": tally.undecodable / tally.images if tally.images else math.nan,
        "assessment_failures": int(tally.assessment_failures),
        "lost_images": int(tally.lost_images),
        "mean_ber": tally.ber.mean,
        "sim_time_s": float(sim_time_s),
    }
    return {name: summary[name] for name in SUMMARY_METRICS}


def conservation(arrived: int, in_service: int, users: UserTally, requested: int, in_flight: int,
                 images: ImageTally) -> dict[str, Any]:
    """The run's books: users arrived = served + out of rounds + gave up + still in service; images requested =
    received + undecodable + lost (by reason) + still in flight. ``holds`` says whether both balance.

    The users and images still in the system are counted where they are (queues, epochs, GPUs, links), not
    as a difference, so a user or an image that went missing shows as an imbalance.
    """
    served = users.outcomes.get("served", 0)
    out_of_rounds = users.outcomes.get("out_of_rounds", 0)
    gave_up = users.outcomes.get("masp_down", 0)
    other = users.departed - served - out_of_rounds - gave_up
    received = images.images - images.undecodable - images.lost_images
    users_hold = arrived == served + out_of_rounds + gave_up + other + in_service and other == 0
    images_hold = requested == images.images + in_flight
    return {
        "users_arrived": int(arrived),
        "users_served": int(served),
        "users_out_of_rounds": int(out_of_rounds),
        "users_gave_up": int(gave_up),
        "users_in_service": int(in_service),
        "images_requested": int(requested),
        "images_received": int(received),
        "images_undecodable": int(images.undecodable),
        "images_lost": {reason: int(images.lost[reason]) for reason in sorted(images.lost)},
        "images_in_flight": int(in_flight),
        "holds": bool(users_hold and images_hold),
    }


def conservation_line(books: dict[str, Any]) -> str:
    """The books of :func:`conservation` in one line."""
    lost = books["images_lost"]
    lost_text = ", ".join(f"{n} {reason}" for reason, n in lost.items()) or "none to faults"
    verdict = "holds" if books["holds"] else "DOES NOT HOLD"
    return (f"conservation {verdict}: {books['users_arrived']} users arrived = {books['users_served']} served + "
            f"{books['users_out_of_rounds']} out of rounds + {books['users_gave_up']} gave up + "
            f"{books['users_in_service']} in service; {books['images_requested']} images = "
            f"{books['images_received']} received + {books['images_undecodable']} undecodable + "
            f"{sum(lost.values())} lost ({lost_text}) + {books['images_in_flight']} in flight")


class EpochColumns:
    """The records of statistical decision epochs, kept as columns instead of one object per image and round.

    The epochs evaluated together are added when they are evaluated (:meth:`add_epochs`: per user ``(q,)``, per
    image ``(q, k_max)`` arrays, of which each user's first ``N_i`` images are used, and the rounds' fields);
    each epoch's rounds are recorded once it ends (:meth:`finish`). Every user's round is one row of growing column buffers, in the order added.
    :meth:`take` returns what was added as two column tables, ``{field: array}`` in :class:`ImageRecord` and
    :class:`RoundRecord` field order, holding the values the objects would, row for row (images user by user
    and image by image within an epoch; epochs in order). An epoch still under way stays until its rounds
    come, unless ``under_way`` (the end of a run: its images are recorded without rounds, as a horizon leaves
    them). The counts of bits flipped (a trace-only column) are drawn there, for all images at once, from
    each image's own uniform (:func:`sim.model.channel.binomial_counts`). :func:`records_from_columns` turns
    the tables into record objects.
    """

    _IMAGE = ("done_s", "arrival_s", "transmission_time_s", "fading_gain", "snr", "ber", "generation_score",
              "received_score", "decodable", "bit_uniform")
    #: Per-user fields given when an epoch starts, and their types in the records.
    _USER = {"user_id": np.int64, "round_index": np.int64, "strategy": np.int64, "n_images": np.int64,
             "power_w": np.float64, "shadowing_db": np.float64}
    #: Per-user fields given when an epoch ends.
    _ROUND = {"requested_power_w": np.float64, "t_request_s": np.float64, "distance_m": np.float64,
              "undecodable": np.int64, "best_round_score": np.float64, "best_score": np.float64,
              "threshold": np.float64, "satisfied": bool, "latency_s": np.float64, "t_done_s": np.float64}
    #: The epoch's own values, one per user row; and the rows' state.
    _EPOCH = {"masp": object, "t0": np.float64, "t_gen": np.float64, "bits": np.int64, "epoch": np.int64,
              "refined": object, "budget_broken": np.float64, "row_id": np.int64, "has_rounds": bool,
              "images_taken": bool, "flips_done": bool}

    def __init__(self, mean_snr_db, utilities, images: bool = True):
        #: ``mean_snr_db(power_w, distance_m)``: the channel's mean SNR (the round records' ``mean_snr_db``).
        self.mean_snr_db = mean_snr_db
        #: ``utilities(best, threshold, latency_s, n_images, requested_power_w, budget_broken)``: the rounds'
        #: ``(qoe, cost, utility)`` (eq. 22a with its penalties), for many rounds at once.
        self.utilities = utilities
        self.images = bool(images)
        self._col: dict[str, np.ndarray] = {}
        self._size = 0  # rows held
        self._next_id = 0  # the next row's id (ids grow; rows keep their order when finished ones are taken)
        self._k = 0
        #: Image and round rows held.
        self.rows = 0

    def _reserve(self, k: int, extra: int, faults: bool) -> None:
        """Room for ``extra`` more rows (buffers allocated at first use and doubled as needed)."""
        if not self._col:
            self._k = k
            spec = {**self._USER, **self._ROUND, **self._EPOCH}
            self._col = {name: np.zeros(256, dtype=dtype) for name, dtype in spec.items()}
            if self.images:
                self._col.update({name: np.zeros((256, k), dtype=bool if name == "decodable" else np.float64)
                                  for name in self._IMAGE})
                self._col["flips"] = np.zeros((256, k), dtype=np.int64)
        elif k != self._k:
            raise ValueError(f"every epoch must have {self._k} image columns, got {k}")
        if faults and self.images and "lost" not in self._col:  # "" where no fault touched an image
            rows = len(self._col["row_id"])
            self._col["lost"] = np.full((rows, k), "", dtype=object)
            self._col["unscored"] = np.full((rows, k), "", dtype=object)
        need = self._size + extra
        capacity = len(self._col["row_id"])
        if need > capacity:
            capacity = max(need, 2 * capacity)
            for name, old in self._col.items():
                grown = np.full((capacity,) + old.shape[1:], "", dtype=object) if old.dtype == object else \
                    np.zeros((capacity,) + old.shape[1:], dtype=old.dtype)
                grown[:self._size] = old[:self._size]
                self._col[name] = grown

    def add_epochs(self, epochs: list[tuple[str, float, int, int, bool]], t_gen: float, bits: int, user: dict,
                   image: dict, rounds: dict, refined: list[str], lost=None, unscored=None) -> list[tuple[int, int]]:
        """Epochs evaluated together: ``epochs`` gives each one's ``(MASP, decision time, users, epoch index at
        its MASP, whether its decision broke the power budget)`` in the order of the rows of ``user``
        (``user_id``, ``round_index``, ``strategy``, ``n_images``, ``power_w``, ``shadowing_db``: ``(q,)`` over
        all their users), ``image`` (every per-image array, ``(q, k_max)``) and ``rounds`` (the rounds' fields:
        ``requested_power_w``, ``t_request_s``, ``distance_m``, ``undecodable``, ``best_round_score``,
        ``best_score``, ``threshold``, ``satisfied``, ``latency_s``, ``t_done_s``; ``refined`` the prompts);
        ``lost``/``unscored`` the faults' reasons per image (or None). The images are recorded from now on; each
        epoch's rounds (their ``qoe``, ``cost`` and ``utility`` scored when taken) once :meth:`finish` says it
        ended. Returns each epoch's entry, for :meth:`finish`."""
        q = len(user["user_id"])
        k = np.shape(image["ber"])[1]
        self._reserve(k, q, lost is not None or unscored is not None)
        col, a = self._col, self._size
        rows = slice(a, a + q)
        for name in self._USER:
            col[name][rows] = user[name]
        for name in self._ROUND:
            col[name][rows] = rounds[name]
        col["refined"][rows] = refined
        if self.images:
            for name in self._IMAGE:
                col[name][rows] = image[name]
            if "lost" in col:
                col["lost"][rows] = "" if lost is None else lost
                col["unscored"][rows] = "" if unscored is None else unscored
        entries, start = [], a
        for masp, t0, size, epoch, budget_broken in epochs:
            part = slice(start, start + size)
            col["masp"][part] = masp
            col["t0"][part] = t0
            col["epoch"][part] = epoch
            col["budget_broken"][part] = float(bool(budget_broken))
            entries.append((self._next_id + start - a, size))
            start += size
        if start != a + q:
            raise ValueError(f"the epochs have {start - a} users, the columns {q}")
        col["t_gen"][rows] = t_gen
        col["bits"][rows] = bits
        col["row_id"][rows] = np.arange(self._next_id, self._next_id + q)
        col["has_rounds"][rows] = False
        col["images_taken"][rows] = not self.images
        col["flips_done"][rows] = False
        self._next_id += q
        self._size += q
        if self.images:
            self.rows += int(np.add.reduce(np.asarray(user["n_images"]), axis=None))
        return entries

    def finish(self, entry: tuple[int, int]) -> None:
        """The epoch of ``entry`` (:meth:`add_epochs`) ended: its rounds are recorded from now on."""
        first, size = entry
        col = self._col
        a = int(np.searchsorted(self._held("row_id"), first))
        if size and (a + size > self._size or col["row_id"][a] != first or col["has_rounds"][a]):
            raise ValueError("finish: unknown epoch, or it was finished already")
        col["has_rounds"][a:a + size] = True
        self.rows += size

    def take(self, under_way: bool = False) -> tuple[dict[str, np.ndarray] | None, dict[str, np.ndarray] | None]:
        """``(image columns, round columns)`` of what was added since the last call (None where nothing)."""
        n = self._size
        if n == 0:
            return None, None
        col = self._col
        has_rounds, taken = col["has_rounds"][:n], col["images_taken"][:n]
        with_images = ~taken & (has_rounds | under_way)
        if not (has_rounds.any() or with_images.any()):
            return None, None
        if self.images:  # every image's bits flipped, drawn once for all of them
            fresh = (has_rounds | with_images) & ~col["flips_done"][:n]
            if fresh.any():
                col["flips"][:n][fresh] = self._flips(fresh)
                col["flips_done"][:n][fresh] = True
        images = self._image_columns(with_images) if with_images.any() else None
        rounds = self._round_columns(has_rounds) if has_rounds.any() else None
        taken |= with_images
        keep = ~has_rounds  # the epochs still under way stay
        m = int(keep.sum())
        for name, values in col.items():
            values[:m] = values[:n][keep]
        self._size = m
        self.rows = int(np.where(col["images_taken"][:m], 0, col["n_images"][:m]).sum()) if self.images else 0
        return images, rounds

    def _held(self, name: str) -> np.ndarray:
        """Column ``name`` over the rows held."""
        return self._col[name][:self._size]

    def _flips(self, rows: np.ndarray) -> np.ndarray:
        """Bits flipped per image of ``rows`` (``(rows, k_max)``; 0 for images not used or lost)."""
        from sim.model.channel import binomial_counts

        def get(name):
            return self._held(name)[rows]

        used = np.arange(self._k) < get("n_images")[:, None]
        flips = binomial_counts(get("bits")[:, None], get("ber"), get("bit_uniform"))
        if "lost" in self._col:
            flips = np.where(get("lost") == "", flips, 0)
        return np.where(used, flips, 0)

    def _image_columns(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        from sim.model.channel import linear_to_db

        def get(name):
            return self._held(name)[rows]

        n = get("n_images")
        used = np.arange(self._k) < n[:, None]
        img = {name: get(name)[used] for name in (*self._IMAGE, "flips")}
        count = int(used.sum())

        def rep(values):
            return np.repeat(values, n)

        t0, t_gen = rep(get("t0")), rep(get("t_gen"))
        done = img["done_s"]
        lost = unscored = None
        if "lost" in self._col:
            lost, unscored = get("lost")[used], get("unscored")[used]
        return {
            "user_id": rep(get("user_id")),
            "masp": rep(get("masp")),
            "round_index": rep(get("round_index")),
            "image_index": np.broadcast_to(np.arange(self._k), used.shape)[used].astype(np.int64),
            "strategy": rep(get("strategy")),
            "generation_seed": np.full(count, -1, dtype=np.int64),
            "n_images": rep(n),
            "power_w": rep(get("power_w")),
            "t_queued_s": t0,
            "t_generation_start_s": t0 + done - t_gen,
            "t_generation_end_s": t0 + done,
            "t_received_s": t0 + img["arrival_s"],
            "generation_time_s": t_gen,
            "time_source": np.full(count, "modelled", dtype=object),
            "model": np.full(count, "surrogate", dtype=object),
            "transmission_time_s": img["transmission_time_s"],
            "shadowing_db": rep(get("shadowing_db")),
            "fading_gain": img["fading_gain"],
            "snr_db": np.asarray(linear_to_db(img["snr"]), dtype=np.float64).reshape(-1),
            "ber": img["ber"],
            "n_bits": rep(get("bits")),
            "bits_flipped": img["flips"],
            "generation_score": img["generation_score"],
            "received_score": img["received_score"],
            "decodable": img["decodable"],
            "damage": np.full(count, math.nan),
            "assessor": np.full(count, "statistical", dtype=object),
            "assessment_failed": np.zeros(count, dtype=bool) if unscored is None else unscored != "",
            "assessment_detail": np.full(count, "", dtype=object) if unscored is None else unscored,
            "lost": np.full(count, "", dtype=object) if lost is None else lost,
        }

    def _round_columns(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        def get(name):
            return self._held(name)[rows]

        n = get("n_images")
        if self.images:
            used = np.arange(self._k) < n[:, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                ber_mean = np.where(n > 0, np.where(used, get("ber"), 0.0).sum(axis=1) / n, math.nan)
            flipped = get("flips").sum(axis=1)
        else:
            ber_mean, flipped = np.full(n.shape, math.nan), np.zeros(n.shape, dtype=np.int64)
        best, threshold, latency, requested = (get("best_round_score"), get("threshold"), get("latency_s"),
                                               get("requested_power_w"))
        qoe, cost, utility = self.utilities(best, threshold, latency, n, requested, get("budget_broken"))
        power = get("power_w")
        return {
            "user_id": get("user_id"),
            "masp": get("masp"),
            "round_index": get("round_index"),
            "epoch": get("epoch"),
            "strategy": get("strategy"),
            "refined_prompt": get("refined"),
            "n_images": n,
            "power_w": power,
            "requested_power_w": requested,
            "t_request_s": get("t_request_s"),
            "t_decision_s": get("t0"),
            "t_done_s": get("t_done_s"),
            "mean_snr_db": self._mean_snr_db(power, get("shadowing_db"), get("distance_m")),
            "ber": ber_mean,
            "bits_flipped": flipped.astype(np.int64),
            "undecodable": get("undecodable"),
            "best_round_score": best,
            "best_score": get("best_score"),
            "threshold": threshold,
            "satisfied": get("satisfied"),
            "latency_s": latency,
            "qoe": qoe,
            "cost": cost,
            "utility": utility,
        }

    def _mean_snr_db(self, power: np.ndarray, shadow: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """Each round's mean SNR at its shadowing (dB; -inf at zero power), for all rounds at once."""
        at_1w = np.asarray(self.mean_snr_db(np.where(power > 0, power, 1.0), distance), dtype=np.float64)
        return np.where(power > 0, at_1w + shadow, -np.inf)


def records_from_columns(columns: dict[str, np.ndarray] | None, record_type: type) -> list:
    """The records of a column table of :class:`EpochColumns` (Python scalars, as the world's objects hold)."""
    if not columns:
        return []
    names = [f.name for f in dataclasses.fields(record_type)]

    def values(column: np.ndarray) -> list:
        out = column.tolist()
        if column.dtype.kind == "f" and np.isnan(column).any():  # NaN as math.nan, as the world writes it
            out = [math.nan if x != x else x for x in out]
        return out

    return [record_type(*row) for row in zip(*(values(columns[name]) for name in names))]
