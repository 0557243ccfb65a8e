"""Scenario schema: YAML in, typed and validated objects out.

Every model forbids unknown keys (``extra="forbid"``), so a typo in a scenario
is an error naming its key path, not a silently ignored setting. Units are in
the field names (``_w`` watts, ``_db`` decibels, ``_m`` metres, ``_s``
seconds, ``_hz`` hertz).

:func:`load_scenario` raises :class:`ScenarioError`, whose ``problems`` are
one line each (``key.path: what is wrong``), for a missing, empty or broken
file as for a wrong value.
"""

from __future__ import annotations

import re

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator

from sim import registry
from sim.model.qoe import QOE_FORMS

# Numbers are strict: a YAML boolean (``yes``, ``true``) or a string is not a number, and (through
# ``allow_inf_nan=False`` on every section) neither is NaN or infinity.
_EXPONENT_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _yaml12_number(value: Any) -> Any:
    """``1e-9`` is a number in YAML 1.2 but a string to PyYAML (YAML 1.1 wants ``1.0e-9``): read it as one."""
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value.strip()):
        return float(value)
    return value


Float = Annotated[float, BeforeValidator(_yaml12_number), Strict()]
Int = Annotated[int, Strict()]
PositiveFloat = Annotated[Float, Field(gt=0)]
NonNegativeFloat = Annotated[Float, Field(ge=0)]
#: An upper bound on money, weights and times whose products and sums must stay finite.
LARGE = 1e9

#: Names checked against a registry of :mod:`sim.registry` (a registered name or a ``package.module:attribute``).
ChannelModelName = Annotated[str, AfterValidator(registry.CHANNEL_MODELS.check_name)]
GeneratorName = Annotated[str, AfterValidator(registry.GENERATORS.check_name)]
AssessorName = Annotated[str, AfterValidator(registry.ASSESSORS.check_name)]
CorpusName = Annotated[str, AfterValidator(registry.CORPORA.check_name)]


def _qoe_form(form: str) -> str:
    if form not in QOE_FORMS:
        raise ValueError(f"unknown QoE form {form!r}; known: {', '.join(QOE_FORMS)}")
    return form


_KEY_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*(?:KEY|TOKEN)$")


def _key_variable(name: str) -> str:
    if not _KEY_VARIABLE.match(name):
        raise ValueError(f"api_key_env must name an environment variable that holds an API key (upper case, ending "
                         f"in KEY or TOKEN, e.g. OPENAI_API_KEY), got {name!r}")
    return name


def _fallback_assessor(name: str) -> str:
    return name if name == "none" else registry.ASSESSORS.check_name(name)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Range(_Strict):
    """A closed interval ``[low, high]`` sampled uniformly."""

    low: Float
    high: Float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class ArrivalConfig(_Strict):
    """How users arrive."""

    #: ``batch``: all users arrive at t = 0 (the paper's setting);
    #: ``poisson``: exponential inter-arrival times with ``rate_per_s``.
    process: Literal["batch", "poisson"] = "batch"
    n_users: Annotated[Int, Field(ge=1)] = 3
    #: Mean arrivals per second (Poisson only).
    rate_per_s: Annotated[PositiveFloat, Field(le=1e6)] = 0.05


class UserConfig(_Strict):
    """What each arriving user brings."""

    #: Prompts to draw from: ``default`` is the shipped prompt set, or a path to a YAML prompt file.
    prompt_set: str = "default"
    #: Fixed prompts assigned in order to users 0, 1, ... (overrides random draws for those users).
    prompts: list[str] = Field(default_factory=list)
    #: Quality thresholds on the assessor's 0-10 scale, drawn uniformly.
    threshold: Range = Range(low=7.5, high=8.5)
    #: Fixed thresholds for users 0, 1, ... (overrides the range for those users).
    thresholds: list[Annotated[Float, Field(gt=0, le=10)]] = Field(default_factory=list)
    #: Distance to the MASP in metres, drawn uniformly.
    distance_m: Range = Range(low=50.0, high=150.0)
    #: Fixed distances in metres for users 0, 1, ... (overrides the range for those users).
    distances_m: list[PositiveFloat] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> UserConfig:
        blank = [i for i, p in enumerate(self.prompts) if not p.strip()]
        if blank:
            raise ValueError(f"prompts[{blank[0]}] is empty: a prompt needs words")
        if not 0 < self.threshold.low <= self.threshold.high <= 10:
            raise ValueError("threshold range must lie within (0, 10]: QoE compares scores with the threshold as a "
                             "ratio, so a threshold of 0 has no meaning")
        if self.distance_m.low <= 0:
            raise ValueError("distance_m.low must be > 0 metres")
        return self


class MaspConfig(_Strict):
    """One edge server (mobile AIGC service provider)."""

    name: str = "masp0"
    #: GPUs serving the generation queue (capacity of the SimPy resource).
    gpus: Annotated[Int, Field(ge=1)] = 1
    #: Total transmit power shared by the users of one decision epoch, watts.
    p_total_w: Annotated[PositiveFloat, Field(le=1e3)] = 1.0
    #: Most users decided for jointly at one epoch (the paper's Q).
    max_users_per_epoch: Annotated[Int, Field(ge=1)] = 3
    #: Position (x, y) in metres; users are placed around the origin at ``users.distance_m``.
    position_m: tuple[Float, Float] = (0.0, 0.0)


class ChannelConfig(_Strict):
    """Wireless link (see :mod:`sim.model.channel`)."""

    path_loss_exponent: PositiveFloat = 3.0
    shadowing_sigma_db: NonNegativeFloat = 4.0
    nakagami_m: Annotated[Float, Field(ge=0.5)] = 2.0
    nakagami_omega: PositiveFloat = 1.0
    noise_power_w: Annotated[PositiveFloat, Field(ge=1e-30, le=1.0)] = 1e-9
    #: Bandwidth per user for the Shannon-rate transmission time, Hz; ``null`` ignores transmission time (as the paper does).
    bandwidth_hz: Annotated[PositiveFloat, Field(ge=1.0, le=1e12)] | None = 10e6
    #: How the BER of one image is set. ``average_fading``: the image spans many coherence times of the
    #: small-scale fading, so its BER is the Nakagami-averaged BER (eq. 9) at this round's shadowed SNR;
    #: ``block_fading``: one fading draw holds for the whole image, BER = Q(sqrt(2 SNR)).
    ber_model: Literal["average_fading", "block_fading"] = "average_fading"
    #: How the world delivers an image. ``bytes``: real image bytes, bits flipped at the BER, decoded and scored
    #: by the assessor. ``statistical``: no pixels; each image's fate (undecodable, or the share of its score it
    #: keeps) is drawn from the fitted damage model the environments use (needs the surrogate generator).
    delivery: Literal["bytes", "statistical"] = "bytes"
    #: Channel model from the registry (:data:`sim.registry.CHANNEL_MODELS`) or a ``package.module:attribute``
    #: factory called with this section; the default is the paper's Nakagami-m fading with log-normal shadowing.
    model: ChannelModelName = "nakagami_lognormal"
    #: Parameters of a user's own channel model (the built-in one takes none).
    params: dict[str, Any] = Field(default_factory=dict)


class LLMEndpointConfig(_Strict):
    """An OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp's server, ...)."""

    #: Base URL, e.g. ``http://localhost:8000/v1``; ``null`` takes ``OPENAI_BASE_URL`` from the environment
    #: (and the OpenAI API when that is unset).
    base_url: str | None = None
    model: str = "gpt-4o-mini"
    #: Name of the environment variable holding the API key (never the key itself): a name that says it
    #: holds a key (``..._KEY``, ``..._TOKEN``, ``..._API_KEY``...), so that a scenario cannot send another
    #: variable (a password, a path) to an endpoint. The key is never sent over plain HTTP to a non-local host.
    api_key_env: Annotated[str, AfterValidator(_key_variable)] = "OPENAI_API_KEY"
    timeout_s: Annotated[PositiveFloat, Field(le=1e4)] = 60.0
    #: Further attempts after a failed or malformed reply.
    max_retries: Annotated[Int, Field(ge=0, le=10)] = 2
    #: Wait before the first retry of a failed request, s; it doubles with each further retry (with jitter:
    #: each wait is drawn in [half, all] of it) up to ``max_backoff_s``. An HTTP 429 or 503 with
    #: ``Retry-After`` waits what the server asks (up to ``max_backoff_s``) instead.
    backoff_s: Annotated[Float, Field(ge=0, le=600)] = 1.0
    max_backoff_s: Annotated[Float, Field(ge=0, le=3600)] = 30.0
    temperature: Annotated[Float, Field(ge=0, le=2)] = 0.2


class DiffusersConfig(_Strict):
    """Real Stable Diffusion through ``diffusers.StableDiffusionPipeline``."""

    #: Hub model id (e.g. ``stabilityai/stable-diffusion-2-base``) or a local directory saved with ``save_pretrained``.
    model: str = "stabilityai/stable-diffusion-2-base"
    #: Never contact a model hub (a local path always loads this way).
    local_files_only: bool = False
    #: A diffusers scheduler class name; ``null`` keeps the pipeline's own.
    scheduler: str | None = "DPMSolverMultistepScheduler"
    steps: Annotated[Int, Field(ge=1, le=1000)] = 25
    guidance_scale: NonNegativeFloat = 7.5
    #: ``auto``: CUDA when present, else CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: ``auto``: float16 on CUDA, float32 on CPU.
    dtype: Literal["auto", "float16", "float32"] = "auto"
    #: Which time drives the MASP's GPU queue: the measured wall-clock time per image, or ``generator.inference_time_s``.
    time_source: Literal["measured", "modelled"] = "measured"
    #: Send the negative-effects aspect to the pipeline's ``negative_prompt``.
    use_negative_prompt: bool = True


class CacheConfig(_Strict):
    """Replay earlier generations from a directory with a manifest (``python -m sim cache build``)."""

    dir: str = "cache/generations"
    #: On a miss: ``error`` stops with a clear message; ``fallback`` generates with ``fallback_backend`` (and stores it).
    on_miss: Literal["error", "fallback"] = "error"
    fallback_backend: Literal["surrogate", "diffusers"] = "surrogate"


class SurrogateConfig(_Strict):
    """The procedural surrogate backend (:mod:`sim.generation.surrogate`)."""

    #: Distinct pictures per prompt: with K, an image drawn with seed s shows picture s mod K of its prompt,
    #: rendered once per process and kept (its generation score still comes from its own seed). ``null``: a
    #: picture per seed (every image rendered and encoded). A load test in the bytes mode spends most of its
    #: time rendering; a few pictures per prompt keep real bytes, bit errors and measured damage per image.
    pictures_per_prompt: Annotated[Int, Field(ge=1)] | None = None


class GeneratorConfig(_Strict):
    """Text-to-image backend."""

    #: A registered generator (:data:`sim.registry.GENERATORS`: surrogate, diffusers, cache) or a
    #: ``package.module:attribute`` factory.
    backend: GeneratorName = "surrogate"
    #: Parameters of a user's own generator backend (the built-in ones have their own sections).
    params: dict[str, Any] = Field(default_factory=dict)
    #: Modelled GPU seconds per image (the paper's T_zeta); the diffusers backend uses it when ``time_source: modelled``.
    inference_time_s: Annotated[PositiveFloat, Field(le=1e6)] = 2.0
    image_size: Annotated[Int, Field(ge=16, le=2048)] = 256
    #: GPU memory one image in flight holds, GiB (resource accounting only: Fig. 13's GiB-seconds per
    #: image). The default is an assumption for Stable Diffusion 2 base at 512 px in fp16, not a
    #: measurement: ``scripts/bench_real_backends.py --device cuda`` prints the peak on a GPU.
    gpu_memory_gib: PositiveFloat = 4.0
    image_format: Literal["jpeg", "png", "raw"] = "jpeg"
    jpeg_quality: Annotated[Int, Field(ge=1, le=95)] = 85
    surrogate: SurrogateConfig = SurrogateConfig()
    diffusers: DiffusersConfig = DiffusersConfig()
    cache: CacheConfig = CacheConfig()


class ClipConfig(_Strict):
    """CLIP score of prompt against image (transformers ``CLIPModel``)."""

    #: Local directory (or hub id) with a CLIPModel and its processor.
    model: str = "openai/clip-vit-base-patch32"
    local_files_only: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"


class LLMAssessorConfig(_Strict):
    """A vision chat model playing the AIGC user (role prompting, retrieval, memory)."""

    endpoint: LLMEndpointConfig = LLMEndpointConfig(model="gpt-4o")
    #: Knowledge base for retrieval: ``default`` is the one shipped in ``sim/data/knowledge``, or a directory of .md files.
    knowledge: str = "default"
    #: Chunks retrieved per request (0 turns retrieval off).
    rag_top_k: Annotated[Int, Field(ge=0, le=20)] = 3
    #: Recent image-score pairs of the same user kept in context (0 turns memory off).
    memory_size: Annotated[Int, Field(ge=0, le=50)] = 4
    #: Assessor used when the LLM fails after its retries (the failure is recorded either way); ``none`` scores 0.
    fallback: Annotated[str, AfterValidator(_fallback_assessor)] = "none"
    #: Images the LLM may fail to score (after retries) in one run before ``on_failure_budget`` applies.
    failure_budget: Annotated[Int, Field(ge=0, le=1_000_000)] = 20
    #: Once the budget is spent: ``stop`` ends the run with an error; ``fallback`` stops asking the endpoint
    #: and scores every further image with ``fallback`` (recorded as failed, with the reason).
    on_failure_budget: Literal["stop", "fallback"] = "stop"


class AssessorConfig(_Strict):
    #: A registered assessor (:data:`sim.registry.ASSESSORS`: fidelity, clip, brisque, llm) or a
    #: ``package.module:attribute`` factory.
    backend: AssessorName = "fidelity"
    #: Parameters of a user's own assessor (the built-in ones have their own sections).
    params: dict[str, Any] = Field(default_factory=dict)
    #: Exponent on SSIM in the fidelity assessor's score = generation score * SSIM^gamma.
    ssim_gamma: PositiveFloat = 2.0
    clip: ClipConfig = ClipConfig()
    llm: LLMAssessorConfig = LLMAssessorConfig()


class PromptingConfig(_Strict):
    """Where prompt-engineering elements (one per aspect of Table II) come from."""

    #: ``default``: fixed generic phrases; ``offline``: phrase banks matched to the prompt by MiniLM
    #: embedding similarity; ``llm``: two-shot prompting of a chat model.
    corpus: CorpusName = "default"
    #: How Table II's strategies combine aspects: ``cumulative`` (strategy s adds aspects 1..s) or ``printed``
    #: (as the paper prints it: the object description, plus one aspect for strategies 2-6); ``null``: the quality
    #: profile's (classic: cumulative, ratings: printed). The prompt text and the quality model both follow it.
    strategy_table: Literal["cumulative", "printed"] | None = None
    llm: LLMEndpointConfig = LLMEndpointConfig()
    #: Directory where generated corpora are cached, keyed by prompt and backend.
    cache_dir: str = "cache/corpus"


class QualityConfig(_Strict):
    """Quality model files; ``default`` uses the statistics shipped in ``sim/data``."""

    #: Which shipped generation model (docs/quality_model.md): ``classic`` (Table II read cumulatively, no
    #: per-prompt strategy effects; the default so far) or ``ratings`` (Table II as printed, per-prompt strategy
    #: effects partly predictable from the prompt's words, slopes and best-of-k from the rating data).
    #: ``paper``: the ratings model calibrated to the paper's results (raw 3/55, always-6 9/55, IRL about 19/55
    #: single-image success), labelled as such in reports.
    profile: Literal["classic", "ratings", "paper"] = "classic"
    #: SD (z-units) of the assessor's own per-image noise, a judge that scores the same image differently each
    #: time; ``null``: the profile's (0: the judge is the rating panel, whose small noise is already in the data's
    #: seed spread). AGIQA-3k puts one human rater at 0.95 z around the 21-rater panel (0.21 z): 0.93 z makes the
    #: judge as noisy as one rater (docs/quality_model.md, 7.3).
    judge_sd_z: Annotated[NonNegativeFloat, Field(le=10)] | None = None
    generation: str = "default"
    damage: str = "default"


class QoEConfig(_Strict):
    """QoE, cost and utility constants (see :mod:`sim.model.qoe`)."""

    #: Latency the user tolerates, seconds (L_max in eq. 23).
    max_latency_s: Annotated[PositiveFloat, Field(le=LARGE)] = 60.0
    #: Weight of QoE in the utility (eta_q).
    eta_q: Annotated[NonNegativeFloat, Field(le=LARGE)] = 10.0
    #: Weight of cost in the utility (eta_c).
    eta_c: Annotated[NonNegativeFloat, Field(le=LARGE)] = 0.05
    #: Cost of one inference trial (c_zeta in eq. 24), in the same unit as one watt of transmit power.
    cost_per_image: Annotated[NonNegativeFloat, Field(le=LARGE)] = 0.5
    #: Penalty rho per violated constraint (eq. 22).
    penalty: Annotated[NonNegativeFloat, Field(le=LARGE)] = 1.0
    #: Received scores below this floor count as the floor in ln(Q / Q_th) (an undecodable image scores 0).
    quality_floor: PositiveFloat = 0.5
    #: How latency and quality combine into QoE (docs/model.md): ``gated`` (default; latency and images count
    #: only once the threshold is met, so QoE never rises with either), ``paper`` (the paper's product, kept to
    #: reproduce it), ``additive`` (quality term less ``latency_weight * L / (L + max_latency_s)``).
    form: Annotated[str, AfterValidator(_qoe_form)] = "gated"
    #: Weight of the latency cost in the ``additive`` form.
    latency_weight: NonNegativeFloat = 0.5


class AgentConfig(_Strict):
    """An agent chosen by registry name, with its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class LabelledAgentConfig(AgentConfig):
    """An agent with its parameters under a label of its own (e.g. ``n_max``: ``static`` with 8 images)."""

    #: The name the agent has in comparisons (default: its registry name).
    label: str | None = None

    @property
    def display(self) -> str:
        return self.label or self.name


class CompareConfig(_Strict):
    """What ``python -m sim compare`` runs when ``--agents`` is not given (and the labels ``--agents`` may use)."""

    #: Provisioning agents, each a registry name with parameters and a label; e.g.
    #: ``[{label: n_max, name: static, params: {n_images: 8}}, {name: lookahead}]``.
    provisioning_agents: list[LabelledAgentConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> CompareConfig:
        for agent in self.provisioning_agents:
            registry.PROVISIONING_AGENTS.check_name(agent.name)
        labels = [a.display for a in self.provisioning_agents]
        if len(set(labels)) != len(labels):
            raise ValueError(f"compare.provisioning_agents: labels must be unique, got {labels}")
        return self


class TrainingConfig(_Strict):
    """Training of provisioning agents (``python -m sim train``)."""

    #: The environment learners train and are evaluated on: ``world`` (``sim/World-v0``: the SimPy world
    #: stepped from decision to decision; sequential, an episode is a run) or ``epoch`` (``sim/Provisioning-v0``:
    #: the paper's one-epoch problem, fresh users every step).
    env: Literal["epoch", "world"] = "epoch"
    #: Decision epochs per episode (``epoch`` env; the ``world`` env's episodes end when every user has left).
    episode_length: Annotated[Int, Field(ge=1)] = 32
    #: ``feasible``: the power split always sums to P_total; ``penalised``: the paper's raw action, eq. 22 penalty.
    action_mapping: Literal["feasible", "penalised"] = "feasible"
    #: Prompt-engineering strategy the environment assumes for every request (0-6).
    strategy: Annotated[Int, Field(ge=0, le=6)] = 6
    #: Environment steps between evaluations (and curve points).
    eval_every_steps: Annotated[Int, Field(ge=1)] = 2000
    #: Evaluation episodes, on seeds no training episode uses.
    eval_episodes: Annotated[Int, Field(ge=1)] = 5
    #: Which evaluation episodes: those of this seed for every run (so that runs of different seeds and the
    #: baselines meet the same ones), or ``null`` for each run's own seed's.
    eval_seed: Annotated[Int, Field(ge=0)] | None = None
    #: Environment steps between numbered checkpoints (the latest is always kept).
    checkpoint_every_steps: Annotated[Int, Field(ge=1)] = 10000
    #: Per algorithm (ppo, sac, d3pg, ddpg), keyword arguments of its constructor / config.
    hyperparameters: dict[str, dict[str, Any]] = Field(default_factory=dict)


class ServiceConfig(_Strict):
    #: Most service rounds per user; a user still below threshold after these leaves unsatisfied.
    max_rounds: Annotated[Int, Field(ge=1)] = 5
    #: Most images one user may get in one round (N_max).
    max_images_per_round: Annotated[Int, Field(ge=1)] = 8
    #: Association rule of arriving users to MASPs.
    association: Literal["nearest", "least_loaded"] = "nearest"
    #: Simulated time limit, seconds (``null``: run until every user has left).
    horizon_s: PositiveFloat | None = None


class OutageWindow(_Strict):
    """A scheduled outage ``[start_s, end_s)``, seconds of simulated time."""

    start_s: Annotated[NonNegativeFloat, Field(le=LARGE)]
    end_s: Annotated[PositiveFloat, Field(le=LARGE)]
    #: The MASP it hits (``null``: every MASP, each its own outage). Not used by assessor outages.
    masp: str | None = None
    #: The GPU it hits, by index on its MASP(s) (``null``: every GPU). GPU outages only.
    gpu: Annotated[Int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> OutageWindow:
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")
        return self


class RandomOutages(_Strict):
    """Random outages of every target of a kind, each on its own: exponential up and repair times."""

    #: Mean time between failures (mean up time), seconds.
    mtbf_s: Annotated[PositiveFloat, Field(le=LARGE)]
    #: Mean time to repair (mean down time), seconds.
    mttr_s: Annotated[PositiveFloat, Field(le=LARGE)]


class FaultsConfig(_Strict):
    """Faults the world suffers (``docs/faults.md``): scheduled windows and random failures per kind.

    An image a fault interrupts is lost with its reason in the trace; every fault's start and end is a
    ``fault`` row of the trace; the run's conservation check counts users and images by outcome.
    """

    #: A whole MASP down (GPUs and transmitter): every image not yet received is lost.
    masp_outages: list[OutageWindow] = Field(default_factory=list)
    masp_failures: RandomOutages | None = None
    #: One GPU down: the image it generates is lost; the queue goes on on the other GPUs.
    gpu_outages: list[OutageWindow] = Field(default_factory=list)
    gpu_failures: RandomOutages | None = None
    #: A MASP's links blocked (all its users): an image whose transmission overlaps a blockage is lost.
    link_blockages: list[OutageWindow] = Field(default_factory=list)
    link_failures: RandomOutages | None = None
    #: The assessor (e.g. an LLM endpoint) unreachable: images received meanwhile are not scored (score 0,
    #: an assessment failure with its reason).
    assessor_outages: list[OutageWindow] = Field(default_factory=list)
    assessor_failures: RandomOutages | None = None
    #: Chance that one assessment fails on its own (a flaky endpoint), drawn per image.
    assessor_failure_probability: Annotated[Float, Field(ge=0, lt=1)] = 0.0
    #: A user whose MASP is down (on arrival, waiting, or back from an interrupted round): ``wait`` for it;
    #: ``reassociate`` to a MASP that is up by the association rule (waits when none is); ``give_up``: leave
    #: unserved (reason ``masp_down``).
    on_masp_down: Literal["wait", "reassociate", "give_up"] = "wait"

    @property
    def any(self) -> bool:
        """Some fault can happen."""
        return bool(self.masp_outages or self.masp_failures or self.gpu_outages or self.gpu_failures
                    or self.link_blockages or self.link_failures or self.assessor_outages
                    or self.assessor_failures or self.assessor_failure_probability > 0)


class Scenario(_Strict):
    """A whole scenario file."""

    #: Also the name of the scenario's results directory: letters, digits, ``.``, ``_`` and ``-``.
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    description: str = ""
    seed: Annotated[Int, Field(ge=0)] = 0
    arrivals: ArrivalConfig = ArrivalConfig()
    users: UserConfig = UserConfig()
    masps: list[MaspConfig] = Field(default_factory=lambda: [MaspConfig()], min_length=1)
    channel: ChannelConfig = ChannelConfig()
    generator: GeneratorConfig = GeneratorConfig()
    assessor: AssessorConfig = AssessorConfig()
    prompting: PromptingConfig = PromptingConfig()
    quality: QualityConfig = QualityConfig()
    qoe: QoEConfig = QoEConfig()
    service: ServiceConfig = ServiceConfig()
    training: TrainingConfig = TrainingConfig()
    compare: CompareConfig = CompareConfig()
    faults: FaultsConfig = FaultsConfig()
    provisioning_agent: AgentConfig = AgentConfig(name="static")
    prompt_agent: AgentConfig = AgentConfig(name="raw")

    @field_validator("provisioning_agent")
    @classmethod
    def _known_provisioning_agent(cls, agent: AgentConfig) -> AgentConfig:
        registry.PROVISIONING_AGENTS.check_name(agent.name)
        return agent

    @field_validator("prompt_agent")
    @classmethod
    def _known_prompt_agent(cls, agent: AgentConfig) -> AgentConfig:
        registry.PROMPT_AGENTS.check_name(agent.name)
        return agent

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        names = [m.name for m in self.masps]
        if len(set(names)) != len(names):
            raise ValueError(f"MASP names must be unique, got {names}")
        budgets = sorted({m.p_total_w for m in self.masps})
        if len(budgets) > 1:
            raise ValueError(f"masps: every MASP needs the same p_total_w (agents are built for one P_total), got "
                             f"{', '.join(f'{b:g}' for b in budgets)} W")
        gpus = {m.name: m.gpus for m in self.masps}
        for kind in ("masp_outages", "gpu_outages", "link_blockages", "assessor_outages"):
            for i, window in enumerate(getattr(self.faults, kind)):
                where = f"faults.{kind}[{i}]"
                if kind == "assessor_outages" and (window.masp is not None or window.gpu is not None):
                    raise ValueError(f"{where}: an assessor outage hits every MASP; it takes no masp or gpu")
                if window.masp is not None and window.masp not in gpus:
                    raise ValueError(f"{where}.masp: no MASP named {window.masp!r} (MASPs: {', '.join(gpus)})")
                if window.gpu is not None:
                    if kind != "gpu_outages":
                        raise ValueError(f"{where}.gpu: only gpu_outages name a GPU")
                    fewest = gpus[window.masp] if window.masp is not None else min(gpus.values())
                    if window.gpu >= fewest:
                        raise ValueError(f"{where}.gpu: GPU {window.gpu} does not exist (GPUs are numbered from 0; "
                                         f"{'the MASP has' if window.masp else 'the smallest MASP has'} {fewest})")
        return self


class ScenarioError(Exception):
    """A scenario that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _format_location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def validation_problems(error: ValidationError) -> list[str]:
    """One ``key.path: message`` line per pydantic error."""
    lines = []
    for err in error.errors():
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and nesting)"
        elif err["type"] == "missing":
            message = "required key is missing"
        lines.append(f"{_format_location(loc)}: {message}")
    return lines


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate already-parsed YAML data."""
    if data is None:
        raise ScenarioError(source, ["(top level): the file is empty; a scenario needs at least `name:`"])
    if not isinstance(data, dict):
        raise ScenarioError(source, [f"(top level): expected a mapping of keys, got {type(data).__name__}"])
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(source, validation_problems(err)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice (YAML says keys are unique;
    PyYAML would keep the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str) -> Any:
    """YAML text as Python data with :func:`yaml.safe_load`'s types, refusing duplicate keys."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read, parse and validate a scenario file; ``overrides`` replace top-level keys."""
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise ScenarioError(source, ["(file): no such file"])
    if path.is_dir():
        raise ScenarioError(source, ["(file): is a directory, expected a YAML file"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError(source, [f"(file): cannot be read: {err}"]) from None
    try:
        data = read_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ScenarioError(source, [f"(yaml): {where}{problem}"]) from None
    if isinstance(data, dict) and overrides:
        data = {**data, **overrides}
    return parse_scenario(data, source)


def default_scenario() -> Scenario:
    """Every default: one MASP and a batch of three users with the paper's channel, costs and thresholds (what
    ``gym.make("sim/Provisioning-v0")`` and the other environments use without a scenario)."""
    return parse_scenario({"name": "default"}, source="the default scenario")


def scenario_to_yaml(scenario: Scenario) -> str:
    """The resolved scenario (defaults filled in) as YAML, saved beside results."""
    return yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False)
