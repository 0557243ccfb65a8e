"""The SimPy world: users, MASPs with GPU queues, fading links, service rounds.

One replication, step by step:

1. Users are drawn from their own random streams (arrival time, prompt,
   threshold, position), one at a time as they arrive, so agents can never
   change who arrives and a run of any length holds only the users present.
2. An arriving user is associated to a MASP (``nearest`` or ``least_loaded``)
   and joins its queue of pending requests.
3. A MASP runs decision epochs one after another. At each epoch it takes up to
   ``max_users_per_epoch`` pending requests; the provisioning agent chooses
   ``(N_i, P_i)`` for them jointly, then the prompt agent a strategy per
   request (it sees the power it was given). A decision whose powers exceed
   ``P_total`` is penalised (eq. 22) and the powers are scaled down to the
   budget, since a transmitter cannot exceed it.
4. Each user's ``N_i`` images are generated on the MASP's GPUs (a
   ``simpy.Resource`` with one slot per GPU, first come first served), each
   image sent as soon as it is generated over the user's link, where bit
   errors hit its bytes, and scored by the assessor. The user keeps the best.
5. A user whose best received score meets the threshold leaves served; one
   below it asks again (the next round joins the queue) until ``max_rounds``.
   The epoch ends when all of its rounds are done.

Latency counts waiting for an epoch, GPU queueing, generation and
transmission. Random draws come from :class:`~sim.seeding.RandomStreams`
keyed by user, round and image, so fading, shadowing and bit errors of a
given image do not depend on what was decided for anyone else.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import simpy
from simpy.events import NORMAL

from sim.assessment.base import Assessment, Assessor
from sim.backends import (
    agent_context,
    build_assessor,
    build_corpus,
    build_generator,
    build_prompt_agent,
    build_provisioning_agent,
    build_service_models,
)
from sim.config import Scenario
from sim.decisions import PromptAgent, PromptObservation, Provision, ProvisioningAgent, ProvisioningObservation
from sim.generation.base import GenerationRequest, Generator
from sim.generation.render import decode_image_checked
from sim.generation.surrogate import typical_image_bits
from sim.model import service
from sim.model.service import ServiceModels
from sim.model.channel import flip_bits, linear_to_db
from sim.model.faults import FaultTimeline, gpu_schedule, image_losses
from sim.model.qoe import QoEFunction, cost, qoe, user_utilities, user_utility, utility
from sim.model.quality import N_STRATEGIES, prompt_complexity_cached
from sim.prompting.prompts import Prompt, load_prompts
from sim.prompting.strategies import apply_strategy
from sim.world.records import (
    EpochColumns,
    FaultRecord,
    ImageRecord,
    ImageTally,
    RoundRecord,
    UserRecord,
    UserTally,
    conservation,
    records_from_columns,
    summarise,
)
from sim.seeding import RandomStreams


@dataclass
class User:
    """A user and its service state (mutable while the simulation runs)."""

    user_id: int
    arrival_s: float
    prompt: str
    complexity: float
    threshold: float
    position_m: np.ndarray
    masp: str = ""
    distance_m: float = math.nan
    #: Mean SNR (dB) at 1 W to the user's MASP, set with the distance when the user is associated.
    mean_snr_db_at_1w: float = math.nan
    rounds_done: int = 0
    images: int = 0
    best_score: float = 0.0
    total_cost: float = 0.0
    strategies: list[int] = field(default_factory=list)
    request_s: float = 0.0
    satisfied: bool = False


@dataclass(frozen=True)
class DecisionRequest:
    """A MASP waiting for a provisioning decision from outside (``World(external_decisions=True)``).

    Succeed ``decided`` with the :class:`~sim.decisions.Provision` for ``observation``'s users.
    """

    masp: str
    observation: ProvisioningObservation
    decided: simpy.Event


@dataclass
class WorldResult:
    """Everything one replication produced."""

    seed: int
    users: list[UserRecord]
    rounds: list[RoundRecord]
    images: list[ImageRecord]
    summary: dict[str, float]
    #: Images generated in the run (kept also when image records are not).
    images_generated: int = 0
    #: The run's books (:func:`sim.world.records.conservation`): users and images by outcome, and whether they balance.
    conservation: dict | None = None
    #: Every fault starting or ending (``faults``), in order of time.
    faults: list[FaultRecord] = field(default_factory=list)


class _Masp:
    def __init__(self, env: simpy.Environment, name: str, gpus: int, p_total_w: float, max_users: int, position,
                 gpus_fail: bool = False):
        self.name = name
        # a GPU failure takes its slot with priority, interrupting the image it generates
        self.gpu = simpy.PreemptiveResource(env, capacity=gpus) if gpus_fail else simpy.Resource(env, capacity=gpus)
        self.n_gpus = gpus
        self.p_total_w = p_total_w
        self.max_users = max_users
        self.position_m = np.asarray(position, dtype=float)
        self.pending: list[User] = []
        self.in_service = 0
        self.wakeup = env.event()
        self.epochs = 0
        #: Image processes under way (bytes delivery), which a MASP outage interrupts.
        self.in_flight: set = set()
        #: Down windows of the MASP, of each GPU and of its links (``None`` without faults of that kind).
        self.down: FaultTimeline | None = None
        self.gpus_down: list[FaultTimeline] | None = None
        self.links_down: FaultTimeline | None = None


class _EpochEnvironment(simpy.Environment):
    """A SimPy environment with a hook run before each event (``before_event(time of the next event)``) and
    events at an absolute time: ``timeout_until(t)`` fires at ``t`` exactly (``now + (t - now)`` need not be
    ``t`` in floating point). The world evaluates the statistical epochs it has started here, several at once
    (:meth:`World._statistical_rounds`)."""

    def __init__(self) -> None:
        super().__init__()
        self.before_event: Callable[[float], None] | None = None

    def step(self) -> None:
        if self.before_event is not None:
            self.before_event(self.peek())
        super().step()

    def timeout_until(self, t: float) -> simpy.Event:
        if t < self._now:
            raise ValueError(f"time {t} is before now ({self._now})")
        event = simpy.Event(self)
        event._ok, event._value = True, None  # as simpy.Timeout initialises itself
        heapq.heappush(self._queue, (t, NORMAL, next(self._eid), event))
        return event


@dataclass
class _EpochStart:
    """A statistical epoch as decided: its MASP, users, images and powers sent per user, the prompt strategies,
    the decision time and the powers requested (``evaluated`` fires with its outcomes when the world evaluates
    it)."""

    masp: Any
    batch: list
    n_images: np.ndarray
    power: np.ndarray
    strategies: list[int]
    t_decision: float
    #: Powers requested (before any scaling to the budget) and whether the decision broke the budget.
    requested: np.ndarray
    budget_broken: bool
    evaluated: Any = None


class _RoundDraws:
    """The statistical delivery mode's random draws per user and round, drawn for blocks of users at once.

    Users ``b * BLOCK .. (b + 1) * BLOCK - 1`` in round ``r`` share the ``statistical_round`` stream at keys
    ``(b, r)``; it draws, for every user of the block, in this order: the round's shadowing (dB,
    ``channel.draw_shadowing_db``), then ``k_max`` fading gains (``channel.draw_fading_gain``), ``k_max``
    standard normals (the generation scores' seed-to-seed part, :meth:`QualityModel.scores_from_normals`),
    ``k_max`` damage uniforms and ``k_max`` bit-error uniforms per user (each an array over the block). User
    ``u``'s round ``r`` is row ``u % BLOCK`` of block ``(u // BLOCK, r)``: fixed by the root seed, the user
    and the round alone, whoever else arrives, whatever any agent decides, whichever MASPs a shard
    simulates. Blocks are drawn when a user of theirs first needs them and a few are kept (one drawn again
    gives the same numbers).
    """

    BLOCK = 256
    KEEP = 64

    def __init__(self, streams: RandomStreams, channel, k_max: int):
        self.streams, self.channel, self.k_max = streams, channel, int(k_max)
        self._blocks: dict[tuple[int, int], np.ndarray] = {}

    def block(self, b: int, r: int) -> np.ndarray:
        key = (b, r)
        rows = self._blocks.get(key)
        if rows is None:
            m, k = self.BLOCK, self.k_max
            rng = self.streams.rng("statistical_round", b, r)
            rows = np.empty((m, 1 + 4 * k))
            rows[:, 0] = self.channel.draw_shadowing_db(m, rng)
            rows[:, 1:1 + k] = np.reshape(self.channel.draw_fading_gain(m * k, rng), (m, k))
            rows[:, 1 + k:1 + 2 * k] = rng.standard_normal((m, k))
            rows[:, 1 + 2 * k:] = rng.random((m, 2 * k))
            if len(self._blocks) >= self.KEEP:
                del self._blocks[next(iter(self._blocks))]
            self._blocks[key] = rows
        return rows

    def rows(self, users: list[int], rounds: list[int]) -> np.ndarray:
        """One row per ``(user, round)``: ``[shadowing, fading x k, normals x k, uniforms x k, bit uniforms x k]``."""
        m, blocks = self.BLOCK, self._blocks
        out = np.empty((len(users), 1 + 4 * self.k_max))
        for i, (u, r) in enumerate(zip(users, rounds)):
            rows = blocks.get((u // m, r))
            out[i] = (self.block(u // m, r) if rows is None else rows)[u % m]
        return out


def users_of_masps(scan: tuple[np.ndarray, np.ndarray], masp_names: list[str],
                   only: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, draws)`` of the users whose nearest MASP is one of ``only``, from a scan of all the users
    (:meth:`World.scan_users`: each one's nearest MASP as an index in ``masp_names``, and its draws)."""
    nearest, drawn = scan
    only = set(only)
    ids = np.flatnonzero(np.isin(nearest, [i for i, name in enumerate(masp_names) if name in only]))
    return ids, drawn[ids]


class World:
    """One replication of a scenario. Build, then :meth:`run`.

    Agents default to the scenario's; pass instances to evaluate others on the
    same draws. ``on_user_done(n_done, n_total)`` is called as users leave
    (progress bars hook in here). ``models`` reuses :class:`ServiceModels`
    already built from the same scenario; ``record_images=False`` keeps no
    per-image records (the summary is unchanged; environments use it).
    :meth:`set_sink` sends every record elsewhere instead of the in-memory lists (e.g.
    :class:`sim.world.streaming.ParquetSink`), so a run of a million users keeps none
    of them: its result carries the summary only.
    ``only_masps`` simulates those MASPs and their users alone (nearest association
    only: a user's MASP then depends on its position alone), the part of the world
    :func:`sim.world.sharding.run_sharded` gives each process.
    """

    def __init__(
        self,
        scenario: Scenario,
        seed: int | None = None,
        provisioning_agent: ProvisioningAgent | None = None,
        prompt_agent: PromptAgent | None = None,
        qoe_fn: QoEFunction = qoe,
        on_user_done: Callable[[int, int], None] | None = None,
        external_decisions: bool = False,
        models: ServiceModels | None = None,
        record_images: bool = True,
        only_masps=None,
        own_users: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else int(seed)
        self.streams = RandomStreams(self.seed)
        #: The models every service round runs on; agents that model the world get these same objects.
        #: ``models`` passes ones already built from this scenario (e.g. kept by an environment across resets).
        self.models = build_service_models(scenario) if models is None else models
        #: Without ``record_images``, no :class:`ImageRecord` is kept (the summary's image metrics still are).
        self.record_images = bool(record_images)
        self.image_tally = ImageTally()
        self.user_tally = UserTally()
        self._departing: list[tuple[User, str, float]] = []  # users who left, their records not made yet
        self._departed = 0
        self._refined: dict[tuple[str, int], str] = {}
        self.channel = self.models.channel
        self.quality = self.models.quality
        self.qoe_params = self.models.qoe
        self.generator: Generator = build_generator(scenario, self.quality, self.streams.integer_seed("prompt_effect"))
        self.statistical = scenario.channel.delivery == "statistical"
        if self.statistical:
            if not hasattr(self.generator, "prompt_effect_key"):
                raise ValueError(
                    "channel.delivery: statistical draws each image's score from the quality model; it needs "
                    f"generator.backend: surrogate, not {scenario.generator.backend!r} (or use delivery: bytes)"
                )
            self._image_bits = int(round(typical_image_bits(scenario)))
            self._k_max = scenario.service.max_images_per_round
            self._draws = _RoundDraws(self.streams, self.models.channel, self._k_max)
        #: Statistical epochs' records, held as columns until :meth:`_emit_columns` hands them on.
        self._columns = EpochColumns(self.channel.mean_snr_db, self._round_utilities, images=self.record_images)
        self._columns_every = 20_000
        self.assessor: Assessor = build_assessor(scenario, self.quality)
        self.corpus = build_corpus(scenario)
        self.qoe_fn = qoe_fn
        self.on_user_done = on_user_done
        if len({m.p_total_w for m in scenario.masps}) > 1:
            raise ValueError("agents are built for one P_total; give every MASP the same p_total_w")
        context = agent_context(scenario, self.models)
        pa, pr = scenario.provisioning_agent, scenario.prompt_agent
        self.provisioning_agent = provisioning_agent or build_provisioning_agent(
            pa.name, pa.params, context, self.streams.rng("provisioning_agent")
        )
        self.prompt_agent = prompt_agent or build_prompt_agent(pr.name, pr.params, context, self.streams.rng("prompt_agent"))

        self.env = _EpochEnvironment()
        faults = scenario.faults
        #: The scenario's faults, or ``None`` when it has none (the world then runs exactly as without the section).
        self.faults = faults if faults.any else None
        gpus_fail = bool(faults.gpu_outages or faults.gpu_failures)
        self.masps = [
            _Masp(self.env, m.name, m.gpus, m.p_total_w, m.max_users_per_epoch, m.position_m, gpus_fail)
            for m in scenario.masps
        ]
        self.assessor_down: FaultTimeline | None = None
        if self.faults is not None:
            self._build_fault_timelines()
        self.fault_records: list[FaultRecord] = []
        self._flaky_draws: dict[tuple[int, int], np.ndarray] = {}
        self._arrived = 0
        self._images_requested = 0
        self._images_in_flight = 0
        self._simulated = self.masps  # the MASPs this world runs (see only_masps)
        self._pool = self._prompt_pool()
        self._arrival_times = self._draw_arrival_times()
        #: The users this world simulates (all, or those of ``only_masps``), in order of arrival.
        self._user_ids = np.arange(len(self._arrival_times))
        self._own_draws: np.ndarray | None = None  # (users, 4): see _own_users
        #: Image GPU completion times of statistical evaluations, by (images per user, epoch sizes, GPUs).
        self._done_times: dict[tuple, np.ndarray] = {}
        if only_masps is not None:
            self._user_ids = self._own_users(only_masps, own_users)
        elif own_users is not None:
            raise ValueError("own_users goes with only_masps")
        self.n_users = len(self._user_ids)
        self._image_records: list[ImageRecord] = []
        self._round_records: list[RoundRecord] = []
        self.user_records: list[UserRecord] = []
        self._started = False
        self.set_sink(None)
        self._all_departed = self.env.event()
        #: With ``external_decisions``, MASPs do not ask the provisioning agent: each decision epoch appends a
        #: :class:`DecisionRequest` here and waits (see :meth:`advance`).
        self.external_decisions = bool(external_decisions)
        self.decision_requests: list[DecisionRequest] = []
        self.decision_requested = self.env.event()
        #: Whether statistical epochs are evaluated several at once (:meth:`_statistical_rounds`): when the MASPs
        #: are independent of each other (nearest association, agents that decide from each observation alone,
        #: no faults, decisions not from outside), so that nothing but the epoch itself reads its outcome
        #: before it ends.
        self.evaluates_epochs_together = bool(
            self.statistical and self.faults is None and not self.external_decisions
            and scenario.service.association == "nearest"
            and getattr(self.provisioning_agent, "per_observation", False)
            and getattr(self.prompt_agent, "per_observation", False))
        self._started_epochs: list[_EpochStart] = []
        self._evaluate_by = math.inf
        #: Epochs evaluated together so far, and the calls that evaluated them (``scripts/bench_world.py`` reports
        #: the mean).
        self.epochs_evaluated = self.evaluation_calls = 0
        if self.evaluates_epochs_together:
            self.env.before_event = self._before_event

    def set_sink(self, sink) -> None:
        """Send every record to ``sink`` (``add_image``, ``add_round``, ``add_user``) instead of keeping it;
        ``None`` keeps them in :attr:`image_records`, :attr:`round_records`, :attr:`user_records`."""
        if self._started:
            raise RuntimeError("set the sink before the run starts")
        self.sink = sink
        self._add_fault = self.fault_records.append if sink is None else sink.add_fault
        self._add_image = self._image_records.append if sink is None else sink.add_image
        self._add_round = self._round_records.append if sink is None else sink.add_round
        self._add_user = self.user_records.append if sink is None else sink.add_user

    @property
    def image_records(self) -> list[ImageRecord]:
        """The image records so far (without a sink)."""
        self._emit_columns()
        return self._image_records

    @property
    def round_records(self) -> list[RoundRecord]:
        """The round records so far (without a sink)."""
        self._emit_columns()
        return self._round_records

    # -- faults -----------------------------------------------------------------------------------

    def _timeline(self, windows, random, *key: int) -> FaultTimeline | None:
        """The down windows of one target: its scheduled ones and, with ``random``, MTBF/MTTR outages drawn
        from the ``faults`` stream at ``key`` (the same in every shard and whatever the agents do)."""
        spans = [(w.start_s, w.end_s) for w in windows]
        if not spans and random is None:
            return None
        if random is None:
            return FaultTimeline(spans)
        return FaultTimeline(spans, random.mtbf_s, random.mttr_s, self.streams.rng("faults", *key))

    def _build_fault_timelines(self) -> None:
        f = self.faults
        for index, masp in enumerate(self.masps):
            mine = [w for w in f.masp_outages if w.masp in (None, masp.name)]
            masp.down = self._timeline(mine, f.masp_failures, 0, index)
            mine = [w for w in f.link_blockages if w.masp in (None, masp.name)]
            masp.links_down = self._timeline(mine, f.link_failures, 2, index)
            if f.gpu_outages or f.gpu_failures:
                gpus = [self._timeline([w for w in f.gpu_outages if w.masp in (None, masp.name) and w.gpu in (None, k)],
                                       f.gpu_failures, 1, index, k) for k in range(masp.n_gpus)]
                masp.gpus_down = [g if g is not None else FaultTimeline() for g in gpus]
        self.assessor_down = self._timeline(f.assessor_outages, f.assessor_failures, 3)

    def _masp_is_down(self, masp: _Masp) -> bool:
        return masp.down is not None and masp.down.is_down(self.env.now)

    def _fault_process(self, timeline: FaultTimeline, fault: str, target: str, masp: _Masp | None,
                       on_down: Callable[[], tuple[int, int]] | None = None):
        """Record each window of ``timeline`` as it starts and ends; ``on_down()`` acts on its start and returns
        ``(users moved, users who gave up)``."""
        name = masp.name if masp is not None else ""
        while True:
            window = timeline.window_after(self.env.now)
            if window is None:
                return
            start, end, random = window
            if start > self.env.now:
                yield self.env.timeout(start - self.env.now)
            moved, gave_up = on_down() if on_down is not None else (0, 0)
            cause = "random" if random else "scheduled"
            self._add_fault(FaultRecord(self.env.now, fault, target, name, "down", cause, moved, gave_up))
            yield self.env.timeout(end - self.env.now)
            self._add_fault(FaultRecord(self.env.now, fault, target, name, "up", cause))

    def _masp_goes_down(self, masp: _Masp) -> tuple[int, int]:
        """A MASP outage starts: every image under way is lost; its waiting users follow ``on_masp_down``."""
        for process in list(masp.in_flight):
            if process.is_alive:
                process.interrupt("masp_outage")
        policy = self.faults.on_masp_down
        if policy == "wait" or not masp.pending:
            return 0, 0
        waiting, masp.pending = masp.pending, []
        moved = gave_up = 0
        for user in waiting:
            if policy == "give_up":
                self._depart(user, "masp_down")
                gave_up += 1
                continue
            other = self._associate(user)
            moved += other is not masp
            other.pending.append(user)
            self._wake(other)
        return moved, gave_up

    def _recorded_timelines(self, masps: list[_Masp]) -> list[tuple[FaultTimeline, str, str, _Masp | None]]:
        """``(timeline, fault, target, masp)`` of every fault the MASPs ``masps`` record (the assessor's with the
        first MASP: in a sharded run, its shard records them)."""
        out: list[tuple[FaultTimeline, str, str, _Masp | None]] = []
        for masp in masps:
            if masp.down is not None:
                out.append((masp.down, "masp_outage", masp.name, masp))
            for k, gpu in enumerate(masp.gpus_down or ()):
                if not gpu.empty:
                    out.append((gpu, "gpu_failure", f"{masp.name}/gpu{k}", masp))
            if masp.links_down is not None:
                out.append((masp.links_down, "link_blockage", f"{masp.name}/links", masp))
        if self.assessor_down is not None and self.masps[0] in masps:
            out.append((self.assessor_down, "assessor_outage", "assessor", None))
        return out

    def _start_faults(self) -> None:
        for timeline, fault, target, masp in self._recorded_timelines(self._simulated):
            on_down = (lambda m=masp: self._masp_goes_down(m)) if fault == "masp_outage" else None
            self.env.process(self._fault_process(timeline, fault, target, masp, on_down))
            if fault == "gpu_failure":
                self.env.process(self._gpu_outages(masp, timeline))

    def fault_records_between(self, masps, after_s: float, until_s: float) -> list[FaultRecord]:
        """The fault records the MASPs named ``masps`` would add after ``after_s`` up to ``until_s`` with nobody left
        to serve (no user moves or gives up): what a shard that finished early leaves out of a longer run."""
        chosen = [m for m in self.masps if m.name in set(masps)]
        records = []
        for timeline, fault, target, masp in self._recorded_timelines(chosen):
            name = masp.name if masp is not None else ""
            for start, end, random in timeline.windows(until_s):
                cause = "random" if random else "scheduled"
                if after_s < start <= until_s:
                    records.append(FaultRecord(start, fault, target, name, "down", cause))
                if after_s < end <= until_s:
                    records.append(FaultRecord(end, fault, target, name, "up", cause))
        return sorted(records, key=lambda r: (r.t_s, r.target, r.state))

    def _gpu_outages(self, masp: _Masp, timeline: FaultTimeline):
        """Hold one GPU slot, with priority, through each down window: the image it generates is interrupted."""
        while True:
            window = timeline.window_after(self.env.now)
            if window is None:
                return
            if window[0] > self.env.now:
                yield self.env.timeout(window[0] - self.env.now)
            with masp.gpu.request(priority=-1, preempt=True) as slot:
                yield slot
                yield self.env.timeout(max(window[1] - self.env.now, 0.0))

    # -- population -------------------------------------------------------------------------------

    def _prompt_pool(self) -> list[Prompt]:
        path = None if self.scenario.users.prompt_set == "default" else self.scenario.users.prompt_set
        return load_prompts(path)

    def _own_users(self, only_masps, own_users: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The ids of the users of ``only_masps`` (those whose nearest MASP is one of them), in order, and their
        draws kept in ``_own_draws``: from ``own_users`` (ids and draws, as :meth:`scan_users` finds them) when
        given, else scanned here."""
        names = {m.name for m in self.masps}
        only = set(only_masps)
        if not only or not only <= names:
            raise ValueError(f"only_masps must name some of the scenario's MASPs ({', '.join(sorted(names))}), "
                             f"got {sorted(only)}")
        if self.scenario.service.association != "nearest":
            raise ValueError("only_masps needs service.association: nearest (with least_loaded a user's MASP depends "
                             "on the other MASPs' queues)")
        if self.faults is not None and self.faults.on_masp_down == "reassociate":
            raise ValueError("only_masps cannot simulate faults.on_masp_down: reassociate (users would move to MASPs "
                             "it does not simulate)")
        self._simulated = [m for m in self.masps if m.name in only]
        if own_users is None:
            own_users = users_of_masps(self.scan_users(0, len(self._arrival_times)),
                                       [m.name for m in self.masps], only)
        ids, draws = (np.asarray(a) for a in own_users)
        if ids.ndim != 1 or draws.shape != (len(ids), 4):
            raise ValueError(f"own_users must be (ids, draws of shape (len(ids), 4)), got shapes {ids.shape} and "
                             f"{draws.shape}")
        # the own users' draws, kept (4 numbers each) so that they are not drawn again as the users arrive
        self._own_draws = draws.astype(np.float64, copy=False)
        return ids.astype(np.int64, copy=False)

    def scan_users(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Users ``start`` to ``stop - 1``: the index in the scenario's MASPs of each one's nearest MASP, and its
        :meth:`_user_draws` (a row of 4 numbers each), from the users' own streams, 65,536 users at a time. Parts
        of a run scanned apart and concatenated give the whole run's scan."""
        nearest, draws = [], []
        chunk = 65_536
        for first in range(int(start), int(stop), chunk):
            users = range(first, min(first + chunk, int(stop)))
            drawn = np.array([self._user_draws(u) for u in users], dtype=np.float64).reshape(-1, 4)
            nearest.append(self._nearest_indices(users, drawn))
            draws.append(drawn)
        if not draws:
            return np.zeros(0, np.intp), np.zeros((0, 4))
        return np.concatenate(nearest), np.concatenate(draws)

    def _nearest_indices(self, users: range, drawn: np.ndarray) -> np.ndarray:
        """Index in ``self.masps`` of the nearest MASP of each of ``users`` (their :meth:`_user_draws` as rows of
        ``drawn``): :meth:`_nearest`'s choice, from distances computed for all of them at once; a user whose two
        nearest MASPs are within a relative 1e-9 of each other is settled by :meth:`_nearest` itself."""
        positions = np.array([self._position(u, (0, 0.0, row[2], row[3])) for u, row in zip(users, drawn.tolist())])
        sites = np.array([m.position_m for m in self.masps], dtype=np.float64).reshape(-1, 2)
        gap = positions.reshape(-1, 1, 2) - sites[None, :, :]
        distance = np.maximum(np.sqrt((gap * gap).sum(axis=2)), 1.0)
        nearest = distance.argmin(axis=1)
        if len(self.masps) > 1:
            two = np.sort(distance, axis=1)[:, :2]
            for i in np.flatnonzero(two[:, 1] - two[:, 0] <= 1e-9 * two[:, 0]).tolist():
                chosen = self._nearest(positions[i])
                nearest[i] = next(j for j, m in enumerate(self.masps) if m is chosen)
        return nearest

    def _draw_arrival_times(self) -> np.ndarray:
        sc = self.scenario
        n = sc.arrivals.n_users
        if sc.arrivals.process == "batch":
            return np.zeros(n)
        gaps = self.streams.rng("arrivals").exponential(1.0 / sc.arrivals.rate_per_s, size=n)
        return np.cumsum(gaps)

    def _user_draws(self, u: int) -> tuple[int, float, float, float]:
        """``(prompt index, threshold, radius, angle)`` of user ``u``, from its own stream."""
        cfg = self.scenario.users
        rng = self.streams.rng("users", u)
        prompt_idx = int(rng.integers(len(self._pool)))
        # three uniforms in one call: uniform(low, high) is low + (high - low) * random(), the same bits
        u_threshold, u_radius, u_angle = rng.random(3).tolist()
        threshold = cfg.threshold.low + (cfg.threshold.high - cfg.threshold.low) * u_threshold
        radius = cfg.distance_m.low + (cfg.distance_m.high - cfg.distance_m.low) * u_radius
        angle = 2 * math.pi * u_angle  # uniform(0, 2 pi): 0 + (2 pi - 0) * random()
        return prompt_idx, threshold, radius, angle

    def _position(self, u: int, drawn: tuple[int, float, float, float]) -> np.ndarray:
        """Where user ``u`` with draws ``drawn`` (:meth:`_user_draws`) stands, m."""
        distances = self.scenario.users.distances_m
        radius = float(distances[u]) if u < len(distances) else drawn[2]
        return radius * np.array([math.cos(drawn[3]), math.sin(drawn[3])])

    def draw_user(self, u: int, index: int | None = None) -> User:
        """User ``u`` as it arrives: prompt, threshold and position from its own stream (no agent touches it).
        ``index``: where ``u`` is among the users this world simulates, when the caller knows it."""
        cfg = self.scenario.users
        drawn = None
        if self._own_draws is not None:  # a shard's users, drawn when it chose them
            i = int(np.searchsorted(self._user_ids, u)) if index is None else index
            if i < len(self._user_ids) and self._user_ids[i] == u:
                row = self._own_draws[i].tolist()
                drawn = (int(row[0]), row[1], row[2], row[3])
        if drawn is None:
            drawn = self._user_draws(u)
        text = cfg.prompts[u] if u < len(cfg.prompts) else self._pool[drawn[0]].text
        threshold = float(cfg.thresholds[u]) if u < len(cfg.thresholds) else drawn[1]
        return User(
            user_id=u,
            arrival_s=float(self._arrival_times[u]),
            prompt=text,
            complexity=prompt_complexity_cached(text),
            threshold=threshold,
            position_m=self._position(u, drawn),
        )

    @property
    def users(self) -> list[User]:
        """Every user of the run, freshly drawn (the run itself draws them one at a time as they arrive)."""
        return [self.draw_user(int(u)) for u in self._user_ids]

    # -- processes --------------------------------------------------------------------------------

    @staticmethod
    def _distance(position_m: np.ndarray, masp: _Masp) -> float:
        """Euclidean distance (>= 1 m); ``sqrt(d . d)``, as ``np.linalg.norm`` computes it, without its overhead."""
        d = position_m - masp.position_m
        return max(math.sqrt(float(d.dot(d))), 1.0)

    def _nearest(self, position_m: np.ndarray) -> _Masp:
        return min(self.masps, key=lambda m: self._distance(position_m, m))

    def _associate(self, user: User) -> _Masp:
        # the MASPs this world simulates: all of them, or a shard's, whose users are those whose nearest MASP is
        # one of them (so the nearest of these is the nearest of all)
        candidates = self._simulated
        if self.faults is not None and self.faults.on_masp_down == "reassociate":
            candidates = [m for m in self._simulated if not self._masp_is_down(m)] or self._simulated
        distances = [self._distance(user.position_m, m) for m in candidates]
        if self.scenario.service.association == "least_loaded":
            k = min(range(len(candidates)), key=lambda i: (len(candidates[i].pending) + candidates[i].in_service,
                                                           distances[i]))
        else:
            k = min(range(len(candidates)), key=distances.__getitem__)
        masp = candidates[k]
        user.masp = masp.name
        user.distance_m = distances[k]
        user.mean_snr_db_at_1w = float(self.channel.mean_snr_db(1.0, user.distance_m))
        return masp

    def _enqueue(self, masp: _Masp, user: User) -> None:
        """``user`` asks ``masp`` for a round (on arrival or again); a MASP that is down gets ``on_masp_down``."""
        user.request_s = self.env.now
        if self.faults is not None and self._masp_is_down(masp):
            if self.faults.on_masp_down == "give_up":
                self._depart(user, "masp_down")
                return
            if self.faults.on_masp_down == "reassociate":
                masp = self._associate(user)
        masp.pending.append(user)
        self._wake(masp)

    @staticmethod
    def _wake(masp: _Masp) -> None:
        if not masp.wakeup.triggered:
            masp.wakeup.succeed()

    def _arrivals(self):
        """One process for all arrivals: each user is drawn when it arrives (users at the same instant together)."""
        times = self._arrival_times
        for i, u in enumerate(self._user_ids.tolist()):
            wait = float(times[u]) - self.env.now
            if wait > 0:
                yield self.env.timeout(wait)
            user = self.draw_user(u, i)
            self._arrived += 1
            self._enqueue(self._associate(user), user)

    def _masp_loop(self, masp: _Masp):
        while True:
            if not masp.pending:
                masp.wakeup = self.env.event()
                yield masp.wakeup
                continue
            if masp.down is not None and masp.down.is_down(self.env.now):
                yield self.env.timeout(masp.down.up_at_s(self.env.now) - self.env.now)
                continue
            batch, masp.pending = masp.pending[: masp.max_users], masp.pending[masp.max_users :]
            masp.in_service = len(batch)
            yield from self._epoch(masp, batch)
            masp.in_service = 0
            masp.epochs += 1

    def _observe(self, masp: _Masp, batch: list[User]) -> ProvisioningObservation:
        now = self.env.now
        # the per-user fields as the rows of two arrays (floats, integers): two array builds instead of nine
        complexities, distances, thresholds, snr_at_1w, best_scores, waited = np.array([
            [u.complexity for u in batch], [u.distance_m for u in batch], [u.threshold for u in batch],
            [u.mean_snr_db_at_1w for u in batch], [u.best_score for u in batch], [now - u.arrival_s for u in batch]],
            dtype=float).reshape(6, len(batch))
        user_ids, rounds_done, images = np.array([[u.user_id for u in batch], [u.rounds_done for u in batch],
                                                  [u.images for u in batch]], dtype=int).reshape(3, len(batch))
        return ProvisioningObservation(
            time_s=now,
            masp=masp.name,
            p_total_w=masp.p_total_w,
            max_images=self.scenario.service.max_images_per_round,
            user_ids=user_ids,
            prompts=tuple(u.prompt for u in batch),
            complexities=complexities,
            distances_m=distances,
            thresholds=thresholds,
            mean_snr_db_at_1w=snr_at_1w,
            rounds_done=rounds_done,
            best_scores=best_scores,
            waited_s=waited,
            images_received=images,
            queue_length=len(masp.pending),
            gpu_backlog=len(masp.gpu.queue) + masp.gpu.count,
        )

    def _epoch(self, masp: _Masp, batch: list[User]):
        obs = self._observe(masp, batch)
        if self.external_decisions:  # the caller (sim.rl.world_env) decides: wait for it
            request = DecisionRequest(masp.name, obs, self.env.event())
            self.decision_requests.append(request)
            if not self.decision_requested.triggered:
                self.decision_requested.succeed()
            decision: Provision = yield request.decided
            decision.check(obs, "the external decider")
        else:
            decision = self.provisioning_agent.decide(obs)
            decision.check(obs, self.provisioning_agent.name)
        requested = decision.power_w
        power, budget_broken = service.transmitted_powers(requested, masp.p_total_w)
        t_decision = self.env.now
        strategies = []
        for i, user in enumerate(batch):
            strategy = self.prompt_agent.choose(
                PromptObservation(
                    user_id=user.user_id,
                    prompt=user.prompt,
                    complexity=user.complexity,
                    threshold=user.threshold,
                    power_w=float(power[i]),
                    round_index=user.rounds_done,
                    history=tuple(user.strategies),
                )
            )
            if not 0 <= int(strategy) < N_STRATEGIES:
                raise ValueError(
                    f"prompt agent {self.prompt_agent.name!r} returned strategy {strategy}; expected 0-{N_STRATEGIES - 1}"
                )
            strategies.append(int(strategy))
        if self.statistical:  # the whole epoch at once, by the round rules; then wait for its last image
            yield from self._statistical_rounds(masp, batch, decision, requested, power, budget_broken, strategies,
                                                t_decision)
            return
        rounds = [
            self.env.process(self._serve_round(masp, user, int(decision.n_images[i]), float(power[i]), strategies[i]))
            for i, user in enumerate(batch)
        ]
        results = yield self.env.all_of(rounds)
        outcomes = [results[p] for p in rounds]

        # Eq. 22a over the epoch's users, from the shared QoE code.
        breakdown = utility(
            best_score=[o["best_round_score"] for o in outcomes],
            threshold=[u.threshold for u in batch],
            latency_s=[o["latency_s"] for o in outcomes],
            n_images=decision.n_images,
            power_w=requested,
            p_total_w=masp.p_total_w,
            params=self.qoe_params,
            qoe_fn=self.qoe_fn,
        )
        for i, (user, out) in enumerate(zip(batch, outcomes)):
            n_i = int(decision.n_images[i])
            self._add_round(
                RoundRecord(
                    user_id=user.user_id,
                    masp=masp.name,
                    round_index=user.rounds_done,
                    epoch=masp.epochs,
                    strategy=out["strategy"],
                    refined_prompt=out["refined_prompt"],
                    n_images=n_i,
                    power_w=float(power[i]),
                    requested_power_w=float(requested[i]),
                    t_request_s=user.request_s,
                    t_decision_s=t_decision,
                    t_done_s=out["t_done_s"],
                    mean_snr_db=out["mean_snr_db"],
                    ber=out["ber"],
                    bits_flipped=out["bits_flipped"],
                    undecodable=out["undecodable"],
                    best_round_score=out["best_round_score"],
                    best_score=max(user.best_score, out["best_round_score"]),
                    threshold=user.threshold,
                    satisfied=max(user.best_score, out["best_round_score"]) >= user.threshold,
                    latency_s=out["latency_s"],
                    qoe=float(breakdown.qoe[i]),
                    cost=float(breakdown.cost[i]),
                    utility=float(breakdown.per_user_penalised[i]),
                )
            )
            user.rounds_done += 1
            user.images += n_i
            user.best_score = max(user.best_score, out["best_round_score"])
            user.total_cost += float(breakdown.cost[i])
            user.strategies.append(out["strategy"])
            user.satisfied = user.best_score >= user.threshold
            if user.satisfied or user.rounds_done >= self.scenario.service.max_rounds:
                self._depart(user)
            else:
                self._enqueue(masp, user)

    def _statistical_epochs(self, epochs: list[_EpochStart]) -> list[tuple]:
        """Every round of some epochs in the statistical delivery mode, at once (:func:`sim.model.service.image_outcomes`
        over all their users; each epoch's images queue on its own MASP's GPUs, :func:`service.image_done_times`
        with ``queues``).

        Each user's round has its own draws (:class:`_RoundDraws`: the shadowing and, for ``N_max`` images, of
        which the first ``N_i`` are used, so a decision never shifts anyone's draws, the fading gains, the
        generation scores' normals, the damage uniforms and the bit-error uniforms). Images queue FIFO on the
        MASP's GPUs (its own count of them) user by user, as in the bytes mode. Records the images and the
        rounds' fields (as columns; the rounds count once :meth:`EpochColumns.finish` says their epoch ended) and
        returns, per epoch, ``(its wait from the decision to its last image, its column entry, and per user: images,
        best score so far, satisfied, cost)``. With faults it takes one epoch, evaluated when it starts.
        """
        if len(epochs) > 1 and (self.faults is not None or not self.evaluates_epochs_together):
            raise RuntimeError("epochs are evaluated together only when the MASPs are independent and nothing fails")
        k = self._k_max
        sizes = [len(e.batch) for e in epochs]
        users = [u for e in epochs for u in e.batch]
        ids, rounds_done = [u.user_id for u in users], [u.rounds_done for u in users]
        draws = self._draws.rows(ids, rounds_done)
        # the users' numbers the rounds depend on, as the rows of one array
        d, t_request, thresholds, best_before = np.array([
            [u.distance_m for u in users], [u.request_s for u in users], [u.threshold for u in users],
            [u.best_score for u in users]], dtype=float).reshape(4, len(users))
        key = self.generator.prompt_effect_key
        mean = self.quality.prompt_mean_score
        means = np.array([mean(u.prompt, s, key) for e in epochs for u, s in zip(e.batch, e.strategies)])
        gen = self.quality.scores_from_normals(means[:, None], draws[:, 1 + k:1 + 2 * k])
        n = np.concatenate([e.n_images for e in epochs])
        power = np.concatenate([e.power for e in epochs])
        masp = epochs[0].masp
        if masp.gpus_down is not None:  # GPUs that fail (one epoch at a time)
            done, gpu_lost = self._gpu_done_times(masp, n, k)
        else:  # each epoch's images queue FIFO on its MASP's GPUs, user by user (few patterns: remembered)
            key = (n.tobytes(), tuple(sizes), tuple(e.masp.n_gpus for e in epochs))
            done = self._done_times.get(key)
            if done is None:
                gpus = np.repeat(np.array([e.masp.n_gpus for e in epochs]), sizes)
                done = service.image_done_times(n, gpus, self.scenario.generator.inference_time_s, k, queues=sizes)
                done.flags.writeable = False
                if len(self._done_times) >= 4096:
                    self._done_times.clear()
                self._done_times[key] = done
            gpu_lost = None
        img = service.image_outcomes(self.models, n, power, d, draws[:, 0], draws[:, 1:1 + k], gen,
                                     draws[:, 1 + 2 * k:1 + 3 * k], self._image_bits, done_s=done)
        lost = unscored = None
        if self.faults is not None:
            img, lost, unscored = self._statistical_faults(masp, epochs[0].batch, n, img, gpu_lost)
        best, latency = service.round_results(n, img)
        used = np.arange(k) < n[:, None]
        broken = ~img.decodable & used
        if lost is not None:
            gone = lost != ""
            broken &= ~gone
            self.image_tally.add(int(broken.sum()), int(((unscored != "") & used).sum()), img.ber[used],
                                 lost[used & gone].tolist())
        else:
            self.image_tally.add(np.count_nonzero(broken), 0, img.ber[used])
        self._images_requested += int(np.add.reduce(n))
        undecodable = broken.sum(axis=1)
        # the rounds' fields: the users' state they depend on does not change before their epochs end
        t_done = np.array([e.t_decision for e in epochs for _ in e.batch]) + latency
        best_now = np.maximum(best_before, best)
        satisfied = best_now >= thresholds
        requested = np.concatenate([e.requested for e in epochs])
        strategies = [s for e in epochs for s in e.strategies]
        user_columns = {"user_id": np.array(ids, dtype=np.int64), "round_index": np.array(rounds_done, dtype=np.int64),
                        "strategy": np.array(strategies, dtype=np.int64),
                        "n_images": n, "power_w": power, "shadowing_db": draws[:, 0]}
        images = {"done_s": img.done_s, "arrival_s": img.arrival_s, "transmission_time_s": img.transmission_s,
                  "fading_gain": draws[:, 1:1 + k], "snr": img.snr, "ber": img.ber, "generation_score": gen,
                  "received_score": img.received, "decodable": img.decodable, "bit_uniform": draws[:, 1 + 3 * k:]}
        rounds = {"requested_power_w": requested, "t_request_s": t_request, "distance_m": d,
                  "undecodable": undecodable, "best_round_score": best, "best_score": best_now,
                  "threshold": thresholds, "satisfied": satisfied, "latency_s": t_done - t_request, "t_done_s": t_done}
        refined = [self._refined_prompt(u.prompt, s) for u, s in zip(users, strategies)]
        entries = self._columns.add_epochs(
            [(e.masp.name, e.t_decision, len(e.batch), e.masp.epochs, e.budget_broken) for e in epochs],
            self.scenario.generator.inference_time_s, self._image_bits, user_columns, images, rounds, refined, lost,
            unscored)
        costs = cost(n.astype(float), requested, self.qoe_params).tolist()  # eq. 24, as in the records
        ends = latency.tolist()
        best_now, satisfied, n_list = best_now.tolist(), satisfied.tolist(), n.tolist()
        out = []
        for entry, (a, b) in zip(entries, itertools.pairwise(itertools.accumulate(sizes, initial=0))):
            out.append((max(ends[a:b]), entry, n_list[a:b], best_now[a:b], satisfied[a:b], costs[a:b]))
        return out

    def _evaluate_started_epochs(self) -> None:
        """Evaluate the epochs started and not evaluated yet, in one call (:meth:`_statistical_epochs`), and resume
        them: their users then wait for their images until their epochs end."""
        started, self._started_epochs = self._started_epochs, []
        self._evaluate_by = math.inf
        self.epochs_evaluated += len(started)
        self.evaluation_calls += 1
        for epoch, result in zip(started, self._statistical_epochs(started)):
            epoch.evaluated.succeed(result)

    def _before_event(self, t_next: float) -> None:
        """The environment's hook before each event: the epochs started must be evaluated before the simulation
        reaches the earliest time one of them could end (:class:`_EpochEnvironment`)."""
        if self._started_epochs and t_next >= self._evaluate_by:
            self._evaluate_started_epochs()

    def _statistical_rounds(self, masp: _Masp, batch: list[User], decision: Provision, requested, power,
                            budget_broken: bool, strategies: list[int], t_decision: float):
        """A statistical epoch (:meth:`_statistical_epochs`), its wait for the last image and its rounds' records,
        kept as columns (:class:`~sim.world.records.EpochColumns`, which scores their utility, eq. 22a, for many
        epochs at once with the shared QoE code, :func:`sim.model.qoe.user_utilities`).

        When the MASPs are independent (:attr:`evaluates_epochs_together`), an epoch is not evaluated when it
        starts: it joins the epochs started and not yet evaluated, which are evaluated together just before the
        simulation reaches the earliest time any of them could end (its last image's GPU completion time, a lower
        bound of its wait). The MASPs' epochs overlap in time, so each call evaluates several of them; every draw
        is the user's and round's own, so the outcomes and records are those of evaluating each epoch alone.
        """
        n = np.asarray(decision.n_images, dtype=np.int64)
        epoch = _EpochStart(masp, batch, n, np.asarray(power, dtype=float), strategies, t_decision,
                            np.asarray(requested, dtype=float), budget_broken)
        if self.evaluates_epochs_together:
            epoch.evaluated = self.env.event()
            self._started_epochs.append(epoch)
            earliest_end = t_decision + service.last_image_done_s(sum(n.tolist()), masp.n_gpus,
                                                                  self.scenario.generator.inference_time_s)
            self._evaluate_by = min(self._evaluate_by, earliest_end)
            wait, entry, n_images, best_now, satisfied, costs = yield epoch.evaluated
            yield self.env.timeout_until(t_decision + wait)
        else:
            wait, entry, n_images, best_now, satisfied, costs = self._statistical_epochs([epoch])[0]
            yield self.env.timeout(wait)
        self._columns.finish(entry)
        if self._columns.rows >= self._columns_every:
            self._emit_columns(under_way=False)
        max_rounds = self.scenario.service.max_rounds
        for user, n_i, b, ok, c, s in zip(batch, n_images, best_now, satisfied, costs, strategies):
            user.rounds_done += 1
            user.images += n_i
            user.best_score = b
            user.total_cost += c
            user.strategies.append(s)
            user.satisfied = ok
            if ok or user.rounds_done >= max_rounds:
                self._depart(user)
            else:
                self._enqueue(masp, user)

    def _round_utilities(self, best, threshold, latency_s, n_images, requested_power_w, budget_broken):
        """``(QoE, cost, utility)`` of rounds (eq. 22a with its penalties; ``budget_broken`` per round: whether its
        epoch broke the power budget), by :func:`sim.model.qoe.user_utilities`."""
        q, c, _, penalised, _ = user_utilities(best, threshold, latency_s, n_images, requested_power_w, budget_broken,
                                               self.qoe_params, self.qoe_fn)
        return q, c, penalised

    def _refined_prompt(self, prompt: str, strategy: int) -> str:
        refined = self._refined.get((prompt, strategy))
        if refined is None:
            refined, _ = apply_strategy(prompt, strategy, self.corpus.elements(prompt), self.quality.strategy_table)
            if len(self._refined) > 65536:
                self._refined.clear()
            self._refined[(prompt, strategy)] = refined
        return refined

    def _emit_columns(self, under_way: bool = True) -> None:
        """Hand the statistical epochs' records held as columns on: to the sink (as columns when it takes them,
        else record by record) or to the in-memory record lists; ``under_way``: also the images of epochs not
        yet over (their rounds follow when they end)."""
        if under_way and self._started_epochs:  # their images are under way too
            self._evaluate_started_epochs()
        images, rounds = self._columns.take(under_way)
        if images is None and rounds is None:
            return
        sink = self.sink
        if sink is not None and hasattr(sink, "add_columns"):
            sink.add_columns(images, rounds)
            return
        for record in records_from_columns(images, ImageRecord):
            self._add_image(record)
        for record in records_from_columns(rounds, RoundRecord):
            self._add_round(record)

    def _gpu_done_times(self, masp: _Masp, n: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """When each image of the epoch leaves its GPU (relative to now), and whether its GPU failed under it:
        :func:`sim.model.faults.gpu_schedule` on the MASP's GPUs, the queue user by user as in the bytes mode."""
        t0 = self.env.now
        ends, failed = gpu_schedule(int(n.sum()), t0, self.scenario.generator.inference_time_s, masp.gpus_down)
        done, lost = np.zeros((len(n), k)), np.zeros((len(n), k), dtype=bool)
        first = np.cumsum(n) - n
        for i, n_i in enumerate(n.tolist()):
            done[i, :n_i] = ends[first[i]:first[i] + n_i] - t0
            lost[i, :n_i] = failed[first[i]:first[i] + n_i]
        return done, lost

    def _assessment_fault(self, user: User, k: int, t: float) -> str:
        """Why the assessment of image ``k`` of ``user``'s round, received at ``t``, fails to a fault (empty when it
        does not): the assessor is down, or the per-image failure probability struck."""
        if self.assessor_down is not None and self.assessor_down.is_down(t):
            return "assessor outage (faults)"
        p = self.faults.assessor_failure_probability
        if p > 0:
            key = (user.user_id, user.rounds_done)
            draws = self._flaky_draws.get(key)
            if draws is None:  # one uniform per image a round may have, from the round's own stream
                if len(self._flaky_draws) > 4096:
                    self._flaky_draws.clear()
                k_max = self.scenario.service.max_images_per_round
                draws = self._flaky_draws[key] = self.streams.rng("assessor_faults", *key).random(k_max)
            if draws[k] < p:
                return "assessor failure (faults.assessor_failure_probability)"
        return ""

    def _statistical_faults(self, masp: _Masp, batch: list[User], n: np.ndarray, img, gpu_lost):
        """The faults' toll on a statistical epoch (:func:`sim.model.faults.image_losses`): lost images score 0
        and end when the fault strikes; decodable images the assessor cannot score (outage or failure draw)
        score 0 too. Returns the epoch's images and, per image, the loss reason and the assessment failure."""
        t0 = self.env.now
        used = np.arange(img.received.shape[-1]) < n[:, None]
        lost, end = image_losses(t0, img.done_s, img.arrival_s, used, gpu_lost, masp.down, masp.links_down)
        gone = lost != ""
        received = np.where(gone, 0.0, img.received)
        decodable = img.decodable & ~gone
        unscored = np.full(lost.shape, "", dtype=object)
        for i, j in zip(*np.nonzero(used & decodable)):
            unscored[i, j] = self._assessment_fault(batch[i], int(j), t0 + float(end[i, j]))
        received = np.where(unscored != "", 0.0, received)
        img = dataclasses.replace(img, received=received, decodable=decodable, ber=np.where(gone, np.nan, img.ber),
                                  arrival_s=end)
        return img, lost, unscored

    def _serve_round(self, masp: _Masp, user: User, n_images: int, power_w: float, strategy: int):
        """Generate, send and assess one round's images for one user; returns the round's outcome."""
        t_request = user.request_s
        r = user.rounds_done
        refined, negative = apply_strategy(user.prompt, strategy, self.corpus.elements(user.prompt),
                                           self.quality.strategy_table)
        shadow_db = float(self.channel.draw_shadowing_db(1, self.streams.rng("shadowing", user.user_id, r))[0])
        mean_snr_db = float(
            np.asarray(self.channel.mean_snr_db(power_w, user.distance_m)) + shadow_db if power_w > 0 else -np.inf
        )
        outcome = {
            "strategy": strategy,
            "refined_prompt": refined,
            "mean_snr_db": mean_snr_db,
            "ber": math.nan,
            "bits_flipped": 0,
            "undecodable": 0,
            "best_round_score": 0.0,
        }
        if n_images >= 1:
            seeds = tuple(self.streams.integer_seed("generation", user.user_id, r, k) for k in range(n_images))
            images = self.generator.generate(
                GenerationRequest(
                    raw_prompt=user.prompt, prompt=refined, strategy=strategy, seeds=seeds, negative_prompt=negative
                )
            )
            sends = [
                self.env.process(self._deliver(masp, user, k, img, n_images, power_w, strategy, shadow_db))
                for k, img in enumerate(images)
            ]
            self._images_requested += len(sends)
            self._images_in_flight += len(sends)
            if self.faults is not None:  # a MASP outage interrupts what is under way
                masp.in_flight.update(sends)
            done = yield self.env.all_of(sends)
            masp.in_flight.difference_update(sends)
            self._images_in_flight -= len(sends)
            records: list[ImageRecord] = [done[p] for p in sends]
            self.image_tally.add(sum(not rec.decodable and not rec.lost for rec in records),
                                 sum(rec.assessment_failed for rec in records), [rec.ber for rec in records],
                                 [rec.lost for rec in records if rec.lost])
            if self.record_images:
                for rec in records:
                    self._add_image(rec)
            bers = [rec.ber for rec in records if not rec.lost]
            outcome["ber"] = float(np.mean(bers)) if bers else math.nan
            outcome["bits_flipped"] = int(sum(rec.bits_flipped for rec in records))
            outcome["undecodable"] = int(sum(not rec.decodable and not rec.lost for rec in records))
            outcome["best_round_score"] = float(max(rec.received_score for rec in records))
        outcome["t_done_s"] = self.env.now
        outcome["latency_s"] = self.env.now - t_request
        return outcome

    def _deliver(self, masp: _Masp, user: User, k: int, image, n_images: int, power_w: float, strategy: int, shadow_db):
        """One image: wait for a GPU, generate, transmit with bit errors, assess (or be lost to a fault)."""
        t_queued = self.env.now
        t_start = math.nan
        r = user.rounds_done
        common = dict(user_id=user.user_id, masp=masp.name, round_index=r, image_index=k, strategy=strategy,
                      generation_seed=image.seed, n_images=n_images, power_w=power_w, t_queued_s=t_queued,
                      generation_time_s=image.generation_time_s, time_source=image.time_source, model=image.model,
                      shadowing_db=shadow_db, n_bits=image.n_bits,
                      generation_score=float(image.generation_score) if image.generation_score is not None else math.nan)
        try:
            with masp.gpu.request() as slot:
                yield slot
                t_start = self.env.now
                yield self.env.timeout(image.generation_time_s)
        except simpy.Interrupt as stop:  # the MASP went down, or this image's GPU failed
            reason = "masp_outage" if stop.cause == "masp_outage" else "gpu_failure"
            return self._lost_image(common, t_start, math.nan, math.nan, reason)
        t_generated = self.env.now
        fading = float(self.channel.draw_fading_gain(1, self.streams.rng("fading", user.user_id, r, k))[0])
        snr = float(self.channel.snr(power_w, user.distance_m, shadow_db, fading))
        ber = float(self.models.image_ber(power_w, user.distance_m, shadow_db, fading))
        received, flipped = flip_bits(image.data, ber, self.streams.rng("bit_errors", user.user_id, r, k))
        tx_time = float(service.transmission_time_s(self.channel, image.n_bits, snr, power_w))
        delay = float(service.delivery_delay_s(tx_time))
        try:
            yield self.env.timeout(delay)
        except simpy.Interrupt:  # the MASP went down while sending
            return self._lost_image(common, t_start, t_generated, tx_time, "masp_outage", fading)
        if masp.links_down is not None and masp.links_down.overlaps(t_generated, t_generated + delay):
            return self._lost_image(common, t_start, t_generated, tx_time, "link_blockage", fading)
        unscored = self._assessment_fault(user, k, self.env.now) if self.faults is not None else ""
        if unscored:
            pixels, why = (image.pixels, "") if received == image.data else decode_image_checked(
                received, image.format, image.pixels.shape)
            verdict = Assessment(score=0.0, decodable=pixels is not None, damage=math.nan,
                                 detail=unscored if pixels is not None else why, failed=pixels is not None,
                                 assessor=self.assessor.name)
        else:
            verdict = self.assessor.assess(image, received, user.prompt, user_id=user.user_id)
        return ImageRecord(
            **common,
            t_generation_start_s=t_start,
            t_generation_end_s=t_generated,
            t_received_s=self.env.now,
            transmission_time_s=tx_time,
            fading_gain=fading,
            snr_db=float(linear_to_db(snr)) if snr > 0 else -math.inf,
            ber=ber,
            bits_flipped=int(flipped),
            received_score=float(verdict.score),
            decodable=bool(verdict.decodable),
            damage=float(verdict.damage),
            assessor=verdict.assessor or self.assessor.name,
            assessment_failed=bool(verdict.failed),
            assessment_detail=verdict.detail if verdict.failed else "",
        )

    def _lost_image(self, common: dict, t_start: float, t_generated: float, tx_time: float, reason: str,
                    fading: float = math.nan) -> ImageRecord:
        """The record of an image a fault lost now: never received, score 0."""
        return ImageRecord(
            **common, t_generation_start_s=t_start, t_generation_end_s=t_generated, t_received_s=self.env.now,
            transmission_time_s=tx_time, fading_gain=fading, snr_db=math.nan, ber=math.nan, bits_flipped=0,
            received_score=0.0, decodable=False, damage=math.nan, assessor=self.assessor.name,
            assessment_failed=False, lost=reason,
        )

    def _depart(self, user: User, outcome: str | None = None) -> None:
        """``user`` leaves: served, out of rounds, or with the ``outcome`` given (e.g. ``masp_down``). Its record is
        made with those of the users who left just before it (:meth:`_record_departures`)."""
        if outcome is None:
            outcome = "served" if user.satisfied else "out_of_rounds"
        self._departing.append((user, outcome, self.env.now))
        self._departed += 1
        done = self._departed
        if len(self._departing) >= 256 or done == self.n_users:
            self._record_departures()
        if self.on_user_done is not None:
            self.on_user_done(done, self.n_users)
        if done == self.n_users:
            self._all_departed.succeed()

    def _record_departures(self) -> None:
        """The records of the users who left since the last call, in the order they left: their QoE and utility
        over their whole stay computed for all of them at once, with the shared QoE code."""
        leaving, self._departing = self._departing, []
        if not leaving:
            return
        users = [u for u, _, _ in leaving]
        latency = np.array([t - u.arrival_s for u, _, t in leaving])
        q = np.asarray(self.qoe_fn(np.array([u.best_score for u in users]), np.array([u.threshold for u in users]),
                                   latency, np.array([max(u.images, 1) for u in users]), self.qoe_params),
                       dtype=float)
        cost_total = np.array([u.total_cost for u in users])
        violated = np.array([not u.satisfied for u in users])
        utilities = np.asarray(user_utility(q, cost_total, violated, self.qoe_params), dtype=float)
        columns = {
            "user_id": [u.user_id for u in users],
            "masp": [u.masp for u in users],
            "prompt": [u.prompt for u in users],
            "complexity": [u.complexity for u in users],
            "threshold": [u.threshold for u in users],
            "distance_m": [u.distance_m for u in users],
            "arrival_s": [u.arrival_s for u in users],
            "departure_s": [t for _, _, t in leaving],
            "rounds": [u.rounds_done for u in users],
            "images": [u.images for u in users],
            "best_score": [u.best_score for u in users],
            "satisfied": [u.satisfied for u in users],
            "single_round_success": [u.satisfied and u.rounds_done == 1 for u in users],
            "latency_s": latency.tolist(),
            "qoe": q.tolist(),
            "cost": [u.total_cost for u in users],
            "utility": utilities.tolist(),
            "outcome": [outcome for _, outcome, _ in leaving],
        }
        self.user_tally.add_columns(columns)
        add_columns = getattr(self.sink, "add_user_columns", None)
        if add_columns is not None:  # a sink that takes them as columns (no record made)
            add_columns(columns)
            return
        names = list(columns)
        for values in zip(*columns.values()):
            self._add_user(UserRecord(**dict(zip(names, values))))

    # -- run --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Schedule arrivals and the MASPs' loops (once); :meth:`run` calls it."""
        if self._started:
            return
        self._started = True
        if self.n_users == 0:  # a shard whose MASPs serve nobody
            self._all_departed.succeed()
        self.env.process(self._arrivals())
        for masp in self._simulated:
            self.env.process(self._masp_loop(masp))
        if self.faults is not None:
            self._start_faults()

    @property
    def all_departed(self) -> bool:
        """Every user has left (served or out of rounds)."""
        return self._all_departed.triggered

    def advance(self) -> DecisionRequest | None:
        """With ``external_decisions``: simulate until a MASP asks for a decision; ``None`` once every user has left.

        Succeed the returned request's ``decided`` event, then call :meth:`advance` again.
        """
        if not self.external_decisions:
            raise RuntimeError("advance() steps a World built with external_decisions=True")
        self.start()
        while not self.decision_requests:
            if self.all_departed:
                return None
            if self.decision_requested.triggered:
                self.decision_requested = self.env.event()
            self.env.run(until=self.env.any_of([self.decision_requested, self._all_departed]))
        return self.decision_requests.pop(0)

    def result(self, end_s: float | None = None) -> WorldResult:
        """The records and summary so far (``end_s``: the simulated time the run ends at; default now)."""
        end = self.env.now if end_s is None else end_s
        self._emit_columns()
        self._record_departures()
        arrived = int(np.searchsorted(self._arrival_times[self._user_ids], end, side="right"))
        self.user_records.sort(key=lambda r: r.user_id)
        summary = summarise(self.user_tally, self.image_tally, arrived, end)
        return WorldResult(self.seed, self.user_records, self.round_records, self.image_records, summary,
                           self.image_tally.images, self.books(), self.fault_records)

    def books(self) -> dict:
        """The conservation check now (:func:`sim.world.records.conservation`), counting the users still in the
        system where they are: waiting at a MASP or in a decision epoch."""
        self._record_departures()
        in_service = sum(len(m.pending) + m.in_service for m in self._simulated)
        return conservation(self._arrived, in_service, self.user_tally, self._images_requested,
                            self._images_in_flight, self.image_tally)

    def run(self) -> WorldResult:
        if self.external_decisions:
            raise RuntimeError("a World with external_decisions is stepped with advance(), not run()")
        self.start()
        horizon = self.scenario.service.horizon_s
        if horizon is None:
            # MASP loops wait forever on an empty queue: stop when the last user has left.
            self.env.run(until=self._all_departed)
            return self.result()
        self.env.run(until=horizon)
        return self.result(horizon)


def run_world(scenario: Scenario, seed: int | None = None, **kwargs) -> WorldResult:
    """Build and run one replication."""
    return World(scenario, seed=seed, **kwargs).run()


__all__ = ["DecisionRequest", "World", "WorldResult", "run_world"]
