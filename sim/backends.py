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
from sim.quality import DamageParams, QualityModel


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


def build_generator(scenario: Scenario, quality: QualityModel, prompt_effect_key: int) -> Generator:
    g = scenario.generator
    if g.backend == "surrogate":
        from sim.generation.surrogate import SurrogateGenerator

        return SurrogateGenerator(
            quality,
            image_size=g.image_size,
            image_format=g.image_format,
            jpeg_quality=g.jpeg_quality,
            inference_time_s=g.inference_time_s,
            prompt_effect_key=prompt_effect_key,
        )
    raise ValueError(f"unknown generator backend {g.backend!r}")  # pragma: no cover - the schema rejects it first


def build_assessor(scenario: Scenario, quality: QualityModel) -> Assessor:
    a = scenario.assessor
    if a.backend == "fidelity":
        from sim.assessment.fidelity import FidelityAssessor

        return FidelityAssessor(ssim_gamma=a.ssim_gamma)
    raise ValueError(f"unknown assessor backend {a.backend!r}")  # pragma: no cover


__all__ = ["DamageParams", "build_assessor", "build_channel", "build_generator", "build_quality_model"]
