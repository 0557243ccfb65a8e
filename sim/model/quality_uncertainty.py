"""Parametric bootstrap over the strategy model's fitted parameters: quality models drawn from their intervals.

The ``ratings`` and ``paper`` quality profiles build every strategy from six aspect gains, one pooled
complexity slope and one per-prompt SD of an aspect's effect, all estimated from human ratings
(``sim/data/quality_strategy_effects.yaml``, docs/quality_model.md section 7) with 95% intervals.
:func:`draw_models` draws those parameters from normals with the estimates as means and the standard
errors their intervals imply (``(high - low) / 3.92``; independent draws: the derivation reports no
covariances), the per-prompt SD truncated at 0, and maps each draw onto a model the way the profile
does (:meth:`sim.model.quality.QualityModel.with_aspects`):

* ``ratings``: an aspect's gain at ``c_ref`` is ``gain + slope * (c_ref - c_data)``, its slope the pooled
  slope, its per-prompt SD the drawn SD;
* ``paper``: the same, then the profile's calibration (``calibration:`` in its file: gains times
  ``gain_scale``, per-prompt SDs times ``prompt_sd_scale``, its anchor) held fixed. The band then says
  how far the human ratings' uncertainty moves the results through the paper's calibration; it does
  not refit the calibration to resampled paper counts.

Everything else (anchor, seed and prompt SDs, the raw-prompt complexity slope, the damage model) stays
the profile's. Draws are reproducible from ``seed``.

>>> from sim.model.quality import QualityModel
>>> base = QualityModel.default(profile="ratings")
>>> models = draw_models(base, 3, seed=0)
>>> len(models), bool(np.any(models[0].offset_z != base.offset_z))
(3, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from sim.model.quality import ASPECTS, QualityModel

#: The derived strategy statistics the draws come from.
EFFECTS_FILE = Path(__file__).resolve().parents[1] / "data" / "quality_strategy_effects.yaml"
#: z of a two-sided 95% interval.
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """An estimate with its standard error (from a 95% interval)."""

    value: float
    se: float

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> "Estimate":
        low, high = (float(x) for x in entry["ci"])
        return cls(float(entry["value"]), (high - low) / (2 * Z95))


@dataclass(frozen=True)
class StrategyParameters:
    """The fitted parameters of the strategy model (z-units) and where the aspect gains were measured."""

    gains: tuple[Estimate, ...]
    slope: Estimate
    prompt_sd: Estimate
    c_data: float

    @classmethod
    def from_yaml(cls, path: str | Path = EFFECTS_FILE) -> "StrategyParameters":
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        gains = raw["aspect_gains"]
        return cls(
            gains=tuple(Estimate.from_entry(gains[a]["gain_at_data_mean_c"]) for a in ASPECTS),
            slope=Estimate.from_entry(gains["pooled_any_modifier_slope"]),
            prompt_sd=Estimate.from_entry(raw["per_prompt_effects"]["agiqa3k_per_modifier"]["sd_z"]),
            c_data=float(gains["c_data"]),
        )


def _calibration(model: QualityModel) -> tuple[float, float]:
    """``(gain_scale, prompt_sd_scale)`` of a paper-calibrated model's file, ``(1, 1)`` for any other."""
    path = model.generation_path
    if path is None:
        return 1.0, 1.0
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    cal = raw.get("calibration") if isinstance(raw, Mapping) else None
    if not cal:
        return 1.0, 1.0
    return float(cal["gain_scale"]), float(cal["prompt_sd_scale"])


def draw_models(base: QualityModel, n: int, seed: int = 0,
                parameters: StrategyParameters | None = None) -> list[QualityModel]:
    """``n`` copies of ``base`` with the strategy parameters drawn from their intervals (module docstring).

    ``base`` must build its strategies from its aspects (the ``ratings`` or ``paper`` profile); the
    ``classic`` profile's cumulative strategies have no per-aspect reading and are refused.
    """
    if base.aspect_offset_z is None or base.strategy_table != "printed":
        raise ValueError("a parametric bootstrap over the strategy model needs a profile whose strategies are its "
                         "aspects' sums under Table II as printed (quality.profile: ratings or paper)")
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    params = parameters or StrategyParameters.from_yaml()
    gain_scale, sd_scale = _calibration(base)
    rng = np.random.default_rng(int(seed))
    shares = base.aspect_prompt_sd_z > 0
    models = []
    for _ in range(int(n)):
        gains = np.array([rng.normal(g.value, g.se) for g in params.gains])
        slope = float(rng.normal(params.slope.value, params.slope.se))
        sd = max(0.0, float(rng.normal(params.prompt_sd.value, params.prompt_sd.se)))
        offsets = gain_scale * (gains + slope * (base.c_ref - params.c_data))
        models.append(base.with_aspects(offsets, np.full(len(ASPECTS), slope), np.where(shares, sd_scale * sd, 0.0)))
    return models


__all__ = ["EFFECTS_FILE", "Estimate", "StrategyParameters", "draw_models"]
