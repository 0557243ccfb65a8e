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


class ExactSum:
    """A running sum kept exactly (Shewchuk's partials, as :func:`math.fsum`), so that adding values one at a
    time gives the same correctly rounded total as ``math.fsum`` over all of them at once, in any order."""

    __slots__ = ("partials", "count")

    def __init__(self) -> None:
        self.partials: list[float] = []
        self.count = 0

    def add(self, x: float) -> None:
        """Add ``x``; NaN is skipped (as pandas' means skip it)."""
        if x != x:
            return
        self.count += 1
        self._add_exact(x)

    def merge(self, other: ExactSum) -> None:
        """Add everything ``other`` holds (exactly: its partials sum to its values' total)."""
        self.count += other.count
        for x in other.partials:
            self._add_exact(x)

    def _add_exact(self, x: float) -> None:
        partials = self.partials
        i = 0
        for y in partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                partials[i] = lo
                i += 1
            x = hi
        partials[i:] = [x]

    @property
    def mean(self) -> float:
        """The mean of the values added (NaN when none)."""
        return math.fsum(self.partials) / self.count if self.count else math.nan


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
        """Count a batch of images: how many failed to decode or to be assessed, their BERs (NaN skipped) and
        the loss reasons of those a fault lost (one per lost image)."""
        self.images += len(bers)
        self.undecodable += int(undecodable)
        self.assessment_failures += int(assessment_failures)
        for b in bers:
            self.ber.add(float(b))
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

    def add(self, user: UserRecord) -> None:
        self.departed += 1
        self.served += bool(user.satisfied)
        self.outcomes[user.outcome] = self.outcomes.get(user.outcome, 0) + 1
        for field, total in self.sums.items():
            total.add(float(getattr(user, field)))

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
        for user in users:
            tally.add(user)
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
