"""Build the pluggable parts of a world (channel, quality model, generator, assessor) from a scenario.

Later backends (``diffusers``, ``cache``, ``llm``, ``clip``) are added here by
name; the world only sees the :class:`~sim.generation.base.Generator` and
:class:`~sim.assessment.base.Assessor` seams.
"""

from __future__ import annotations

from sim.assessment.base import Assessor
from sim.channel import Channel, ChannelParams
from sim.config import Scenario
from sim.generation.base import Generator
from sim.prompting.strategies import DefaultCorpus, PromptCorpus
from sim.quality import QualityModel


def build_channel(scenario: Scenario) -> Channel:
    c = scenario.channel
    return Channel(
        ChannelParams(
            path_loss_exponent=c.path_loss_exponent,
            shadowing_sigma_db=c.shadowing_sigma_db,
            nakagami_m=c.nakagami_m,
            nakagami_omega=c.nakagami_omega,
            noise_power_w=c.noise_power_w,
            bandwidth_hz=c.bandwidth_hz,
        )
    )


def build_quality_model(scenario: Scenario) -> QualityModel:
    """The shipped quality model, or the files a scenario points at (``quality.generation`` / ``quality.damage``)."""
    q = scenario.quality
    fmt = scenario.generator.image_format
    if q.generation == "default" and q.damage == "default":
        return QualityModel.default(image_format=fmt)
    default = QualityModel.default(image_format=fmt)
    generation = default.generation_path if q.generation == "default" else q.generation
    damage = default.damage_path if q.damage == "default" else q.damage
    return QualityModel.from_yaml(generation, damage, image_format=fmt)


def build_generator(scenario: Scenario, quality: QualityModel, prompt_effect_key: int, backend: str | None = None) -> Generator:
    """The scenario's generator (or ``backend`` instead of ``generator.backend``)."""
    g = scenario.generator
    backend = backend or g.backend
    if backend == "surrogate":
        from sim.generation.surrogate import SurrogateGenerator

        return SurrogateGenerator(
            quality,
            image_size=g.image_size,
            image_format=g.image_format,
            jpeg_quality=g.jpeg_quality,
            inference_time_s=g.inference_time_s,
            prompt_effect_key=prompt_effect_key,
        )
    if backend == "diffusers":
        from sim.generation.diffusers_backend import DiffusersGenerator

        return DiffusersGenerator(
            g.diffusers,
            image_size=g.image_size,
            image_format=g.image_format,
            jpeg_quality=g.jpeg_quality,
            inference_time_s=g.inference_time_s,
        )
    if backend == "cache":
        from sim.generation.cache import CacheGenerator

        fallback = None
        if g.cache.on_miss == "fallback":
            fallback = build_generator(scenario, quality, prompt_effect_key, backend=g.cache.fallback_backend)
        return CacheGenerator(g.cache, fallback=fallback, image_format=g.image_format)
    raise ValueError(f"unknown generator backend {backend!r}")  # pragma: no cover - the schema rejects it first


def build_assessor(scenario: Scenario, quality: QualityModel, backend: str | None = None) -> Assessor:
    """The scenario's assessor (or ``backend`` instead of ``assessor.backend``)."""
    a = scenario.assessor
    backend = backend or a.backend
    if backend == "fidelity":
        from sim.assessment.fidelity import FidelityAssessor

        return FidelityAssessor(ssim_gamma=a.ssim_gamma)
    if backend == "clip":
        from sim.assessment.clip import ClipAssessor

        return ClipAssessor(a.clip)
    if backend == "brisque":
        from sim.assessment.brisque import BrisqueAssessor

        return BrisqueAssessor()
    if backend == "llm":
        from sim.assessment.llm import LLMAssessor

        fallback = None if a.llm.fallback == "none" else build_assessor(scenario, quality, backend=a.llm.fallback)
        return LLMAssessor(a.llm, fallback=fallback)
    raise ValueError(f"unknown assessor backend {backend!r}")  # pragma: no cover


def build_corpus(scenario: Scenario) -> PromptCorpus:
    """Where prompt-engineering elements come from (``prompting.corpus``)."""
    p = scenario.prompting
    if p.corpus == "default":
        return DefaultCorpus()
    from sim.prompting.corpus import build_corpus as build

    return build(p)


__all__ = ["build_assessor", "build_channel", "build_corpus", "build_generator", "build_quality_model"]
