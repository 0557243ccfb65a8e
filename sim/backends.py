"""Build a world's pluggable parts from a scenario, through the registries of :mod:`sim.registry`.

Each builder looks the scenario's name up in its registry and calls what is
registered there; the built-in factories below are registered by entry-point
string, so a backend's heavy imports (torch, diffusers, openai) happen only when
a scenario uses it. A user's own part is a ``"package.module:attribute"`` name
in the scenario (docs/extending.md).

:func:`build_service_models` bundles the models one service round runs on; the
world, the environments and the oracle share that one bundle.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from sim.assessment.base import Assessor
from sim.config import Scenario
from sim.decisions import AgentContext, PromptAgent, ProvisioningAgent
from sim.generation.base import Generator
from sim.model.qoe import QoEParams
from sim.model.quality import QualityModel
from sim.model.service import ServiceModels
from sim.prompting.prompts import prompt_category
from sim.prompting.strategies import DefaultCorpus, PromptCorpus
from sim.registry import (
    ASSESSORS,
    CHANNEL_MODELS,
    CORPORA,
    GENERATORS,
    PROMPT_AGENTS,
    PROVISIONING_AGENTS,
    Registry,
    RegistryError,
)


class AgentError(RegistryError):
    """An agent that cannot be built (unknown name, bad parameters)."""


# ---------------------------------------------------------------------------
# builders


def build_channel(scenario: Scenario):
    """The scenario's channel model (``channel.model``; default Nakagami-m fading with log-normal shadowing)."""
    factory = CHANNEL_MODELS.resolve(scenario.channel.model)
    return factory(scenario.channel)


def build_quality_model(scenario: Scenario) -> QualityModel:
    """The shipped quality model, or the files a scenario points at (``quality.generation`` / ``quality.damage``)."""
    q = scenario.quality
    fmt = scenario.generator.image_format
    table = scenario.prompting.strategy_table
    if q.generation == "default" and q.damage == "default":
        model = QualityModel.default(image_format=fmt, strategy_table=table, profile=q.profile, judge_sd_z=q.judge_sd_z)
    else:
        default = QualityModel.default(image_format=fmt, profile=q.profile)
        generation = default.generation_path if q.generation == "default" else q.generation
        damage = default.damage_path if q.damage == "default" else q.damage
        model = QualityModel.from_yaml(generation, damage, image_format=fmt, strategy_table=table,
                                       judge_sd_z=q.judge_sd_z)
    model.categorise = prompt_category  # per-prompt strategy effects that follow what a prompt is about
    return model


def build_service_models(scenario: Scenario, masp_index: int = 0, quality: QualityModel | None = None) -> ServiceModels:
    """The channel, quality model, QoE constants, BER model and GPU queue of the scenario's MASP ``masp_index``."""
    masp = scenario.masps[masp_index]
    return ServiceModels(
        channel=build_channel(scenario),
        quality=quality if quality is not None else build_quality_model(scenario),
        qoe=QoEParams(**scenario.qoe.model_dump()),
        ber_model=scenario.channel.ber_model,
        gpus=int(masp.gpus),
        inference_time_s=float(scenario.generator.inference_time_s),
    )


def build_generator(scenario: Scenario, quality: QualityModel, prompt_effect_key: int, backend: str | None = None) -> Generator:
    """The scenario's generator (or ``backend`` instead of ``generator.backend``)."""
    factory = GENERATORS.resolve(backend or scenario.generator.backend)
    return factory(scenario, quality, prompt_effect_key)


def build_assessor(scenario: Scenario, quality: QualityModel, backend: str | None = None) -> Assessor:
    """The scenario's assessor (or ``backend`` instead of ``assessor.backend``)."""
    factory = ASSESSORS.resolve(backend or scenario.assessor.backend)
    return factory(scenario, quality)


def build_corpus(scenario: Scenario) -> PromptCorpus:
    """Where prompt-engineering elements come from (``prompting.corpus``)."""
    factory = CORPORA.resolve(scenario.prompting.corpus)
    return factory(scenario)


def agent_context(scenario: Scenario, models: ServiceModels | None = None) -> AgentContext:
    """What an agent is told when it is built: the first MASP's budget, ``N_max``, the scenario and its models."""
    return AgentContext(
        p_total_w=scenario.masps[0].p_total_w,
        max_images=scenario.service.max_images_per_round,
        scenario=scenario,
        models=models,
    )


def _build_agent(kind: str, registry: Registry, base: type, name: str, params: dict[str, Any], context, rng):
    try:
        cls = registry.resolve(name)
    except RegistryError as err:
        raise AgentError(str(err)) from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise AgentError(f"{kind} agent {name!r} is {cls!r}, not a subclass of sim.decisions.{base.__name__}")
    signature = inspect.signature(cls.__init__)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    accepted = [p for p in signature.parameters if p not in ("self", "context", "rng", "args", "kwargs")]
    unknown = sorted(set(params) - set(accepted))
    if unknown and not takes_any:
        takes = ", ".join(accepted) or "no parameters"
        raise AgentError(f"{kind} agent {name!r} does not take {', '.join(unknown)}; it takes {takes}")
    try:
        agent = cls(context, rng, **params)
    except (TypeError, ValueError) as err:
        raise AgentError(f"{kind} agent {name!r}: {err}") from None
    if agent.name == base.name:  # a user's class without a name of its own: call it by what the scenario says
        agent.name = name
    return agent


def build_provisioning_agent(
    name: str, params: dict[str, Any], context: AgentContext, rng: np.random.Generator
) -> ProvisioningAgent:
    """The provisioning agent registered as ``name`` (or the entry point ``name``), with ``params``."""
    return _build_agent("provisioning", PROVISIONING_AGENTS, ProvisioningAgent, name, dict(params), context, rng)


def build_prompt_agent(name: str, params: dict[str, Any], context: AgentContext, rng: np.random.Generator) -> PromptAgent:
    """The prompt agent registered as ``name`` (or the entry point ``name``), with ``params``."""
    return _build_agent("prompt", PROMPT_AGENTS, PromptAgent, name, dict(params), context, rng)


# ---------------------------------------------------------------------------
# built-in factories (registered in sim.registry by entry-point string)


def surrogate_generator(scenario: Scenario, quality: QualityModel, prompt_effect_key: int) -> Generator:
    from sim.generation.surrogate import SurrogateGenerator

    g = scenario.generator
    return SurrogateGenerator(
        quality,
        image_size=g.image_size,
        image_format=g.image_format,
        jpeg_quality=g.jpeg_quality,
        inference_time_s=g.inference_time_s,
        prompt_effect_key=prompt_effect_key,
        pictures_per_prompt=g.surrogate.pictures_per_prompt,
    )


def diffusers_generator(scenario: Scenario, quality: QualityModel, prompt_effect_key: int) -> Generator:
    from sim.generation.diffusers_backend import DiffusersGenerator

    g = scenario.generator
    return DiffusersGenerator(
        g.diffusers,
        image_size=g.image_size,
        image_format=g.image_format,
        jpeg_quality=g.jpeg_quality,
        inference_time_s=g.inference_time_s,
    )


def cache_generator(scenario: Scenario, quality: QualityModel, prompt_effect_key: int) -> Generator:
    from sim.generation.cache import CacheGenerator

    g = scenario.generator
    fallback = None
    if g.cache.on_miss == "fallback":
        fallback = build_generator(scenario, quality, prompt_effect_key, backend=g.cache.fallback_backend)
    return CacheGenerator(g.cache, fallback=fallback, image_format=g.image_format)


def fidelity_assessor(scenario: Scenario, quality: QualityModel) -> Assessor:
    from sim.assessment.fidelity import FidelityAssessor

    return FidelityAssessor(ssim_gamma=scenario.assessor.ssim_gamma)


def clip_assessor(scenario: Scenario, quality: QualityModel) -> Assessor:
    from sim.assessment.clip import ClipAssessor

    return ClipAssessor(scenario.assessor.clip)


def brisque_assessor(scenario: Scenario, quality: QualityModel) -> Assessor:
    from sim.assessment.brisque import BrisqueAssessor

    return BrisqueAssessor()


def llm_assessor(scenario: Scenario, quality: QualityModel) -> Assessor:
    from sim.assessment.llm import LLMAssessor

    llm = scenario.assessor.llm
    fallback = None if llm.fallback == "none" else build_assessor(scenario, quality, backend=llm.fallback)
    return LLMAssessor(llm, fallback=fallback)


def default_corpus(scenario: Scenario) -> PromptCorpus:
    return DefaultCorpus()


def offline_corpus(scenario: Scenario) -> PromptCorpus:
    from sim.prompting.corpus import CachedCorpus, OfflineCorpus

    return CachedCorpus(OfflineCorpus(), scenario.prompting.cache_dir)


def llm_corpus(scenario: Scenario) -> PromptCorpus:
    from sim.prompting.corpus import CachedCorpus, LLMCorpus

    return CachedCorpus(LLMCorpus(scenario.prompting.llm), scenario.prompting.cache_dir)


__all__ = [
    "AgentError",
    "agent_context",
    "build_assessor",
    "build_channel",
    "build_corpus",
    "build_generator",
    "build_prompt_agent",
    "build_provisioning_agent",
    "build_quality_model",
    "build_service_models",
]
