"""Fit the quality model (``sim/model/quality.py``) from a demonstration dataset D.

D (``sim/dataset/demonstrations.py``) holds one row per (prompt, strategy, seed, power
level): the assessor's score of the intact image (``generation_score``) and of
the image as received after bit errors (``received_score``), with the prompt's
complexity, the BER and the image's size in bits. :func:`calibrate` turns it into
the two YAML files :meth:`sim.model.quality.QualityModel.from_yaml` reads:

* ``<out>``: the **generation** part (same schema as
  ``sim/data/quality_generation.yaml``);
* ``<out stem>.damage.yaml``: the **damage** part (same schema as
  ``sim/data/quality_damage.yaml``, one entry under ``formats:`` for D's image
  format).

A scenario uses them with ``quality: {generation: <out>, damage: <out stem>.damage.yaml}``.

Generation part (one row per image: D's power rows of an image share its
``generation_score``). The model is::

    score = clip(mu(s, c) + u_p + eps, 0, 10),   mu(s, c) = a_s + b_s (c - c_ref)

1. **Fixed effects**: ordinary least squares of ``generation_score`` on strategy
   dummies and strategy dummies x ``(c - c_ref)`` (14 coefficients, ``c_ref`` =
   0.5 as in the shipped file). With ``mapping.scale = 1`` the z-units of the
   YAML are score points: ``anchor = a_0``, ``complexity_slope_z = b_0``,
   ``offset_z[s] = a_s - a_0``, ``slope_z[s] = b_s - b_0``. OLS is unbiased
   whatever the prompt random effect; its standard errors are cluster-robust
   by prompt (CR1 sandwich), since the images of one prompt share ``u_p``.
2. **Variance components** of the residuals, nested ANOVA (prompt > prompt x
   strategy cell > seed), with the usual method-of-moments estimators floored
   at 0 (K seeds per cell, n = S K images per prompt)::

       MS_within  (df = N - cells)                 E = seed_var
       MS_cell    (df = cells - P - 12)            E = seed_var + K inter_var
       MS_prompt  (df = P - 2)                     E = seed_var + K inter_var + n prompt_var
       seed_sd    = sqrt(MS_within)
       prompt_sd  = sqrt(max(0, (MS_prompt - MS_cell) / n))
       inter_sd   = sqrt(max(0, (MS_cell - MS_within) / K))   (diagnostic only)

   The degrees of freedom account for the fixed effects removed (2 at prompt
   level: intercept and complexity line; 12 within prompts). The quality model
   has no prompt x strategy term, so ``inter_sd`` is reported (with its F-test)
   but not written; a clearly non-zero one means strategies help some prompts
   more than their complexity predicts.
3. **Clipping**: scores are clipped to [0, 10]. Near a bound the fitted means
   are pulled toward the centre and ``seed_sd`` shrinks. The fit reports the
   share of scores at a bound and warns above 1 %; no Tobit correction is made
   (with the shipped model fewer than 0.1 % of scores are clipped).

Damage part: exactly the estimators of ``scripts/fit_damage_model.py`` (which
imports them from here): with ``e = ber * n_bits`` the expected bit errors,
``retention(e) = 1 / (1 + (e / e50) ** k)`` by least squares
(:func:`fit_retention`) over the decodable rows' ``received / generation``
score ratios, and ``undecodable_per_error`` by maximum likelihood
(:func:`fit_undecodable`) from the decodable / undecodable outcomes.

>>> round(float(retention_curve(23.0, math.log(23.0), 1.2)), 3)
0.5
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats
from scipy.optimize import curve_fit, minimize_scalar

from sim.io import write_text
from sim.prompting.strategies import STRATEGIES
from sim.model.quality import N_STRATEGIES, SCORE_MAX, SCORE_MIN, DamageParams, QualityModel

#: e50 written when no decodable image showed damage (PNG: any bit error breaks a CRC).
E50_NO_DAMAGE = 1.0e9
#: Complexity at which ``anchor`` and the strategy offsets are expressed (as in the shipped file).
C_REF = 0.5
#: Share of scores at 0 or 10 above which the fit warns about clipping bias.
CLIP_WARN_SHARE = 0.01

# ---------------------------------------------------------------------------
# damage estimators (shared with scripts/fit_damage_model.py)
# ---------------------------------------------------------------------------


def retention_curve(e: np.ndarray, log_e50: float, k: float) -> np.ndarray:
    """``1 / (1 + (e / exp(log_e50)) ** k)``: the damage part's retention, parametrised for fitting."""
    return 1.0 / (1.0 + (np.asarray(e, dtype=float) / math.exp(log_e50)) ** k)


def fit_undecodable(errors: np.ndarray, undecodable: np.ndarray) -> float:
    """Maximum-likelihood rate ``u`` of ``P(undecodable) = 1 - exp(-u e)``.

    >>> fit_undecodable(np.array([1.0, 2.0]), np.array([False, False]))
    0.0
    """
    e = np.asarray(errors, dtype=float)
    u = np.asarray(undecodable, dtype=bool)
    if not u.any():
        return 0.0
    if u.all():
        raise ValueError("every trial was undecodable: lower the BER grid")

    def nll(log_rate: float) -> float:
        lam = math.exp(log_rate)
        p = -np.expm1(-lam * e[u])
        return float(-(np.log(np.maximum(p, 1e-300)).sum()) + lam * e[~u].sum())

    res = minimize_scalar(nll, bounds=(-30.0, 8.0), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


def fit_retention(errors: np.ndarray, ratio: np.ndarray) -> tuple[float, float, bool]:
    """Least-squares ``(e50, k)`` of ``ratio ~ 1 / (1 + (e / e50) ** k)``; third value False
    when no decodable trial showed damage (then ``e50`` is :data:`E50_NO_DAMAGE`, ``k`` 1)."""
    e = np.asarray(errors, dtype=float)
    y = np.asarray(ratio, dtype=float)
    if not np.any(y < 0.999):
        return E50_NO_DAMAGE, 1.0, False
    # Start from where the binned mean crosses one half (or the largest e seen).
    order = np.argsort(e)
    half = e[order][np.argmax(y[order] < 0.5)] if np.any(y < 0.5) else e.max() * 10
    popt, _ = curve_fit(
        retention_curve,
        e,
        y,
        p0=(math.log(max(half, 1e-9)), 1.0),
        bounds=((math.log(1e-6), 0.05), (math.log(E50_NO_DAMAGE), 10.0)),
        maxfev=20000,
    )
    return float(math.exp(popt[0])), float(popt[1]), True


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


class CalibrationError(ValueError):
    """A dataset that cannot be calibrated (missing columns, strategies, too few prompts or seeds)."""


@dataclass(frozen=True)
class GenerationFit:
    """Fitted generation part, in score points (``scale = 1``)."""

    anchor: float
    c_ref: float
    complexity_slope: float
    offsets: np.ndarray
    slopes: np.ndarray
    seed_sd: float
    prompt_sd: float
    #: SD of a prompt x strategy random effect (not part of the quality model; diagnostic).
    interaction_sd: float
    #: 14 coefficients (a_0, b_0, a_1, b_1, ...) and their cluster-robust covariance.
    coef: np.ndarray
    cov: np.ndarray
    diagnostics: dict[str, Any]

    def mean_score(self, complexity: float, strategy: int) -> float:
        """Fitted ``mu(s, c)`` (points, before clipping)."""
        return float(self.coef[2 * strategy] + self.coef[2 * strategy + 1] * (complexity - self.c_ref))

    def mean_score_se(self, complexity: float, strategy: int) -> float:
        """Cluster-robust standard error of :meth:`mean_score`."""
        v = np.zeros(self.coef.size)
        v[2 * strategy] = 1.0
        v[2 * strategy + 1] = complexity - self.c_ref
        return float(math.sqrt(max(v @ self.cov @ v, 0.0)))

    def difference_se(self, complexity: float, strategy: int, baseline: int = 0) -> float:
        """Standard error of ``mean_score(c, strategy) - mean_score(c, baseline)``."""
        v = np.zeros(self.coef.size)
        d = complexity - self.c_ref
        v[2 * strategy] += 1.0
        v[2 * strategy + 1] += d
        v[2 * baseline] -= 1.0
        v[2 * baseline + 1] -= d
        return float(math.sqrt(max(v @ self.cov @ v, 0.0)))


@dataclass(frozen=True)
class DamageFit:
    """Fitted damage part for one image format (the estimators of ``scripts/fit_damage_model.py``)."""

    image_format: str
    e50: float
    k: float
    undecodable_per_error: float
    damage_seen: bool
    diagnostics: dict[str, Any]
    #: Binned comparison, one dict per bin of expected errors.
    table: list[dict[str, float]] = field(default_factory=list)

    def params(self) -> DamageParams:
        return DamageParams(e50=self.e50, k=self.k, undecodable_per_error=self.undecodable_per_error)


@dataclass(frozen=True)
class CalibrationResult:
    generation: GenerationFit
    damage: DamageFit
    generation_path: Path
    damage_path: Path
    source: str
    warnings: tuple[str, ...] = ()

    def quality_model(self) -> QualityModel:
        """The fitted model, loaded back from the files written (what a scenario would get)."""
        return QualityModel.from_yaml(self.generation_path, self.damage_path, image_format=self.damage.image_format)

    def report(self) -> str:
        """A plain-text report of the fit: parameters, standard errors, diagnostics, warnings."""
        return format_report(self)


# ---------------------------------------------------------------------------
# loading D
# ---------------------------------------------------------------------------

_GEN_COLUMNS = ("prompt", "complexity", "strategy", "generation_score")
_DAMAGE_COLUMNS = ("received_score", "ber", "n_bits", "decodable")


def _load(dataset: Path | str | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if isinstance(dataset, pd.DataFrame):
        return dataset, "<DataFrame>"
    path = Path(dataset)
    if not path.is_file():
        raise CalibrationError(f"{path}: no such dataset file (build one with `python -m sim demo-dataset`)")
    try:
        return pd.read_parquet(path), str(path)
    except Exception as err:  # noqa: BLE001 - any reader failure: one clear line
        raise CalibrationError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err})") from None


def _image_key(df: pd.DataFrame) -> list[str]:
    key = ["prompt", "strategy"]
    if "seed_index" in df.columns:
        key.append("seed_index")
    elif "seed" in df.columns:
        key.append("seed")
    else:
        raise CalibrationError("dataset needs a 'seed_index' (or 'seed') column to tell images apart")
    return key


def _failed(df: pd.DataFrame, *columns: str) -> np.ndarray:
    bad = np.zeros(len(df), bool)
    for c in columns:
        if c in df.columns:
            bad |= df[c].astype(bool).to_numpy()
    return bad


def images_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per image (prompt, strategy, seed) with its generation score and complexity."""
    missing = [c for c in _GEN_COLUMNS if c not in df.columns]
    if missing:
        raise CalibrationError(f"dataset lacks column(s) {', '.join(missing)} (is it a demonstration dataset?)")
    key = _image_key(df)
    ok = ~_failed(df, "generation_assessment_failed") & np.isfinite(df["generation_score"].to_numpy(float))
    images = df.loc[ok, key + ["complexity", "generation_score"]].drop_duplicates(key)
    return images.reset_index(drop=True)


# ---------------------------------------------------------------------------
# generation fit
# ---------------------------------------------------------------------------


def _design(strategy: np.ndarray, complexity: np.ndarray, c_ref: float) -> np.ndarray:
    n = strategy.size
    x = np.zeros((n, 2 * N_STRATEGIES))
    rows = np.arange(n)
    x[rows, 2 * strategy] = 1.0
    x[rows, 2 * strategy + 1] = complexity - c_ref
    return x


def fit_generation(images: pd.DataFrame, c_ref: float = C_REF) -> GenerationFit:
    """Fixed effects by OLS and variance components by nested ANOVA (see the module docstring).

    ``images``: one row per image with ``prompt``, ``strategy``, ``complexity``, ``generation_score``.
    """
    y = images["generation_score"].to_numpy(float)
    s = images["strategy"].to_numpy(int)
    c = images["complexity"].to_numpy(float)
    prompts = images["prompt"].astype(str).to_numpy()
    present = sorted(set(s.tolist()))
    if present != list(range(N_STRATEGIES)):
        lacking = sorted(set(range(N_STRATEGIES)) - set(present))
        raise CalibrationError(
            f"dataset lacks strategy(ies) {', '.join(map(str, lacking))}: the quality model needs all "
            f"{N_STRATEGIES} (build D with strategies 0..{N_STRATEGIES - 1})"
        )
    p_codes, p_index = np.unique(prompts, return_inverse=True)
    n_prompts = p_codes.size
    if n_prompts < 4:
        raise CalibrationError(f"dataset has {n_prompts} prompt(s); the prompt effect needs at least 4")
    for st in range(N_STRATEGIES):
        if np.unique(c[s == st]).size < 2:
            raise CalibrationError(
                f"strategy {st}: all its prompts have the same complexity, so its complexity slope "
                "cannot be fitted (use prompts of different complexity)"
            )
    cell = p_index * N_STRATEGIES + s
    cell_codes, cell_index, cell_counts = np.unique(cell, return_inverse=True, return_counts=True)
    if np.all(cell_counts < 2):
        raise CalibrationError("every (prompt, strategy) has a single seed: seed_sd needs at least 2 seeds per cell")

    x = _design(s, c, c_ref)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    fitted = x @ coef
    resid = y - fitted
    rank = int(np.linalg.matrix_rank(x))

    # cluster-robust (CR1) covariance by prompt
    xtx_inv = np.linalg.pinv(x.T @ x)
    meat = np.zeros((x.shape[1], x.shape[1]))
    for p in range(n_prompts):
        sel = p_index == p
        g = x[sel].T @ resid[sel]
        meat += np.outer(g, g)
    n = y.size
    adj = n_prompts / (n_prompts - 1) * (n - 1) / max(n - rank, 1)
    cov = adj * xtx_inv @ meat @ xtx_inv

    # nested ANOVA of the residuals
    cell_sum = np.bincount(cell_index, weights=resid)
    cell_mean = cell_sum / cell_counts
    prompt_counts = np.bincount(p_index).astype(float)
    prompt_mean = np.bincount(p_index, weights=resid) / prompt_counts
    grand = resid.mean()
    cells_per_prompt = np.bincount(cell_codes // N_STRATEGIES, minlength=n_prompts)
    cell_prompt = cell_codes // N_STRATEGIES
    ss_within = float(((resid - cell_mean[cell_index]) ** 2).sum())
    ss_cell = float((cell_counts * (cell_mean - prompt_mean[cell_prompt]) ** 2).sum())
    ss_prompt = float((prompt_counts * (prompt_mean - grand) ** 2).sum())
    df_within = n - cell_codes.size
    df_prompt = n_prompts - 2  # intercept and complexity line are fitted at prompt level
    df_cell = cell_codes.size - n_prompts - (rank - 2)
    if df_within < 1 or df_prompt < 1 or df_cell < 1:
        raise CalibrationError("too few images for the variance components (need more prompts or seeds)")
    ms_within = ss_within / df_within
    ms_cell = ss_cell / df_cell
    ms_prompt = ss_prompt / df_prompt
    # effective group sizes (exact for a balanced design)
    k0 = (n - float((cell_counts**2).sum()) / n) / max(cell_codes.size - 1, 1)
    n0 = (n - float((prompt_counts**2).sum()) / n) / max(n_prompts - 1, 1)
    seed_var = ms_within
    inter_var = max(0.0, (ms_cell - ms_within) / k0)
    prompt_var = max(0.0, (ms_prompt - ms_cell) / n0)
    f_inter = ms_cell / ms_within if ms_within > 0 else math.inf
    p_inter = float(stats.f.sf(f_inter, df_cell, df_within)) if math.isfinite(f_inter) else 0.0
    f_prompt = ms_prompt / ms_cell if ms_cell > 0 else math.inf
    p_prompt = float(stats.f.sf(f_prompt, df_prompt, df_cell)) if math.isfinite(f_prompt) else 0.0
    # approximate standard errors of the SDs (delta method on the mean squares)
    seed_sd = math.sqrt(seed_var)
    se_seed_sd = seed_sd / math.sqrt(2.0 * df_within)
    var_prompt_var = 2.0 / n0**2 * (ms_prompt**2 / df_prompt + ms_cell**2 / df_cell)
    prompt_sd = math.sqrt(prompt_var)
    se_prompt_sd = math.sqrt(var_prompt_var) / (2.0 * prompt_sd) if prompt_sd > 0 else math.sqrt(math.sqrt(var_prompt_var))

    at_low = float(np.mean(y <= SCORE_MIN))
    at_high = float(np.mean(y >= SCORE_MAX))
    ss_tot = float(((y - y.mean()) ** 2).sum())
    diagnostics = {
        "images": int(n),
        "prompts": int(n_prompts),
        "cells": int(cell_codes.size),
        "seeds_per_cell": float(n / cell_codes.size),
        "strategies_per_prompt": float(cells_per_prompt.mean()),
        "complexity_range": [float(c.min()), float(c.max())],
        "r2": float(1.0 - float((resid**2).sum()) / ss_tot) if ss_tot > 0 else math.nan,
        "residual_sd": float(resid.std(ddof=rank)),
        "ms_within": ms_within,
        "ms_cell": ms_cell,
        "ms_prompt": ms_prompt,
        "df_within": int(df_within),
        "df_cell": int(df_cell),
        "df_prompt": int(df_prompt),
        "f_interaction": f_inter,
        "p_interaction": p_inter,
        "f_prompt": f_prompt,
        "p_prompt": p_prompt,
        "se_seed_sd": se_seed_sd,
        "se_prompt_sd": se_prompt_sd,
        "share_at_0": at_low,
        "share_at_10": at_high,
        "score_mean": float(y.mean()),
        "score_sd": float(y.std(ddof=1)),
    }
    a = coef[0::2]
    b = coef[1::2]
    return GenerationFit(
        anchor=float(a[0]),
        c_ref=float(c_ref),
        complexity_slope=float(b[0]),
        offsets=a - a[0],
        slopes=b - b[0],
        seed_sd=seed_sd,
        prompt_sd=prompt_sd,
        interaction_sd=math.sqrt(inter_var),
        coef=coef,
        cov=cov,
        diagnostics=diagnostics,
    )


# ---------------------------------------------------------------------------
# damage fit
# ---------------------------------------------------------------------------


def damage_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The rows a damage fit uses: positive generation score, both assessments good."""
    missing = [c for c in _DAMAGE_COLUMNS + ("generation_score",) if c not in df.columns]
    if missing:
        raise CalibrationError(f"dataset lacks column(s) {', '.join(missing)} (is it a demonstration dataset?)")
    g = df["generation_score"].to_numpy(float)
    r = df["received_score"].to_numpy(float)
    ok = (
        np.isfinite(g)
        & (g > 0)
        & np.isfinite(r)
        & np.isfinite(df["ber"].to_numpy(float))
        & ~_failed(df, "generation_assessment_failed", "received_assessment_failed")
    )
    out = df.loc[ok].copy()
    out["errors"] = out["ber"].to_numpy(float) * out["n_bits"].to_numpy(float)
    out["ratio"] = out["received_score"].to_numpy(float) / out["generation_score"].to_numpy(float)
    return out.reset_index(drop=True)


def damage_fit_table(
    groups: list[np.ndarray], errors: np.ndarray, decodable: np.ndarray, ratio: np.ndarray,
    pred_undecodable: np.ndarray, pred_retention: np.ndarray,
) -> tuple[list[dict[str, float]], float, float, float]:
    """Measured against fitted damage per group of rows (boolean masks), and the RMSEs over groups.

    Returns ``(table, rmse_retention, rmse_undecodable, rmse_score_share)``; ``ratio`` is the received /
    generation score (0 when undecodable).
    """
    table: list[dict[str, float]] = []
    sq_r, sq_u, sq_all = [], [], []
    for sel in groups:
        d = sel & decodable
        row = {
            "mean_errors": float(errors[sel].mean()),
            "rows": int(sel.sum()),
            "undecodable": float((~decodable[sel]).mean()),
            "p_undecodable_fit": float(pred_undecodable[sel].mean()),
            "retention": float(ratio[d].mean()) if d.any() else math.nan,
            "retention_fit": float(pred_retention[d].mean()) if d.any() else math.nan,
            "score_share": float(np.where(decodable[sel], ratio[sel], 0.0).mean()),
            "score_share_fit": float(((1 - pred_undecodable) * pred_retention)[sel].mean()),
        }
        table.append(row)
        if d.any():
            sq_r.append((row["retention"] - row["retention_fit"]) ** 2)
        sq_u.append((row["undecodable"] - row["p_undecodable_fit"]) ** 2)
        sq_all.append((row["score_share"] - row["score_share_fit"]) ** 2)

    def rmse(values: list[float]) -> float:
        return float(np.sqrt(np.mean(values))) if values else math.nan

    return table, rmse(sq_r), rmse(sq_u), rmse(sq_all)


def fit_damage(rows: pd.DataFrame, image_format: str, bins: int = 10) -> DamageFit:
    """``e50``, ``k`` and ``undecodable_per_error`` from rows with ``errors``, ``ratio``, ``decodable``."""
    if rows.empty:
        raise CalibrationError("no usable rows for the damage fit (all generation scores 0 or failed)")
    e = rows["errors"].to_numpy(float)
    ratio = rows["ratio"].to_numpy(float)
    dec = rows["decodable"].to_numpy(bool)
    if not dec.any():
        raise CalibrationError("no received image decoded: raise the power levels or shorten the distance")
    e50, k, damaged = fit_retention(e[dec], ratio[dec])
    u = fit_undecodable(e, ~dec)
    pred_r = retention_curve(e, math.log(e50), k)
    pred_u = -np.expm1(-e * u)
    # bins of expected errors: zero errors apart, then equal-count bins on the rest
    edges_src = np.sort(e[e > 0])
    groups: list[np.ndarray] = []
    if np.any(e == 0):
        groups.append(e == 0)
    if edges_src.size:
        qs = np.unique(np.quantile(edges_src, np.linspace(0, 1, bins + 1)))
        for i in range(qs.size - 1):
            lo, hi = qs[i], qs[i + 1]
            sel = (e > 0) & (e >= lo) & ((e < hi) if i < qs.size - 2 else (e <= hi))
            if sel.any():
                groups.append(sel)
    table, rmse_r, rmse_u, rmse_all = damage_fit_table(groups, e, dec, ratio, pred_u, pred_r)
    n_bits = rows["n_bits"].to_numpy(float)
    diagnostics = {
        "rows": int(e.size),
        "decodable_rows": int(dec.sum()),
        "undecodable_rows": int((~dec).sum()),
        "rows_with_errors": int((rows["bits_flipped"].to_numpy() > 0).sum()) if "bits_flipped" in rows else None,
        "errors_range": [float(e.min()), float(e.max())],
        "errors_median": float(np.median(e)),
        "mean_n_bits": float(n_bits.mean()),
        "n_bits_range": [int(n_bits.min()), int(n_bits.max())],
        "rmse_retention_samples": float(np.sqrt(np.mean((ratio[dec] - pred_r[dec]) ** 2))),
        "rmse_retention_binned": rmse_r,
        "rmse_undecodable_binned": rmse_u,
        "rmse_score_share_binned": rmse_all,
    }
    return DamageFit(
        image_format=image_format,
        e50=e50,
        k=k,
        undecodable_per_error=u,
        damage_seen=damaged,
        diagnostics=diagnostics,
        table=table,
    )


# ---------------------------------------------------------------------------
# calibrate
# ---------------------------------------------------------------------------


def damage_path_for(out_path: Path | str) -> Path:
    """Where :func:`calibrate` writes the damage part: ``<out stem>.damage.yaml`` beside ``out_path``.

    >>> damage_path_for("results/quality.yaml").as_posix()
    'results/quality.damage.yaml'
    """
    p = Path(out_path)
    return p.with_name(p.stem + ".damage.yaml")


def calibrate(dataset: Path | str | pd.DataFrame, out_path: Path | str, c_ref: float = C_REF) -> CalibrationResult:
    """Fit the quality model from D and write ``out_path`` (generation) and ``<stem>.damage.yaml``.

    Raises :class:`CalibrationError` (a ValueError, one clear line) for a dataset
    that cannot be calibrated. Both files are written atomically.
    """
    df, source = _load(dataset)
    if df.empty:
        raise CalibrationError(f"{source}: the dataset has no rows")
    warnings: list[str] = []
    images = images_frame(df)
    gen = fit_generation(images, c_ref=c_ref)
    clipped = gen.diagnostics["share_at_0"] + gen.diagnostics["share_at_10"]
    if clipped > CLIP_WARN_SHARE:
        warnings.append(
            f"{clipped:.1%} of generation scores sit at 0 or 10 (clipped): fitted means near the bounds are "
            "pulled toward the centre and seed_sd is biased low"
        )
    if gen.diagnostics["p_interaction"] < 0.01 and gen.interaction_sd > 0.25 * gen.seed_sd:
        warnings.append(
            f"prompt x strategy effects (SD {gen.interaction_sd:.3f}, F-test p = {gen.diagnostics['p_interaction']:.2g}) "
            "are not represented in the quality model"
        )
    n_failed = int(_failed(df, "generation_assessment_failed", "received_assessment_failed").sum())
    if n_failed:
        warnings.append(f"{n_failed} row(s) with a failed assessment were left out")
    formats = sorted(set(df["image_format"].astype(str))) if "image_format" in df.columns else ["jpeg"]
    if len(formats) != 1:
        raise CalibrationError(f"dataset mixes image formats {formats}: calibrate one format at a time")
    dmg = fit_damage(damage_frame(df), formats[0])
    if not dmg.damage_seen:
        warnings.append("no decodable image showed damage: retention set to 1 (e50 = 1e9)")
    if dmg.diagnostics["errors_range"][1] < dmg.e50:
        warnings.append(
            f"the largest expected error count in D ({dmg.diagnostics['errors_range'][1]:.3g}) is below the fitted "
            f"e50 ({dmg.e50:.3g}): e50 and k are extrapolated (use lower powers or a longer distance)"
        )
    out = Path(out_path)
    dpath = damage_path_for(out)
    meta = dict(df.attrs.get("demo_dataset", {})) if isinstance(df.attrs.get("demo_dataset"), dict) else {}
    result = CalibrationResult(
        generation=gen, damage=dmg, generation_path=out, damage_path=dpath, source=source, warnings=tuple(warnings)
    )
    _write_generation_yaml(out, result, meta)
    _write_damage_yaml(dpath, result, meta)
    return result


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------


def _g(x: float, digits: int = 4) -> float:
    """Round to significant digits for the YAML."""
    return float(f"{x:.{digits}g}")


def _describe_source(result: CalibrationResult, meta: dict[str, Any]) -> list[str]:
    lines = [f"# Fitted by sim/dataset/calibration.py from the demonstration dataset {result.source}"]
    if meta:
        what = ", ".join(
            f"{k}={meta[k]}" for k in ("scenario", "generator", "model", "assessor", "image_size", "image_format")
            if k in meta
        )
        if what:
            lines.append(f"#   ({what})")
    lines.append(f"#   on {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.")
    return lines


def _write_generation_yaml(path: Path, result: CalibrationResult, meta: dict[str, Any]) -> None:
    g = result.generation
    d = g.diagnostics
    strategies = []
    for st in STRATEGIES:
        strategies.append(
            {
                "id": st.id,
                "name": st.name,
                "offset_z": _g(float(g.offsets[st.id]), 5),
                "slope_z": _g(float(g.slopes[st.id]), 5),
                "mean_at_c": [_g(g.mean_score(c, st.id), 4) for c in (0.0, 0.5, 1.0)],
                "se_mean_at_c": [_g(g.mean_score_se(c, st.id), 3) for c in (0.0, 0.5, 1.0)],
            }
        )
    body = {
        "schema": 1,
        "generated_by": "sim/dataset/calibration.py",
        "source": result.source,
        "complexity": {"function": "sim.model.quality.prompt_complexity"},
        "mapping": {
            "anchor": _g(g.anchor, 5),
            "scale": 1.0,
            "c_ref": g.c_ref,
            "note": "z-units are score points (scale 1); anchor = fitted mean raw-prompt score at c_ref",
        },
        "seed_sd_z": _g(g.seed_sd, 5),
        "prompt_sd_z": _g(max(g.prompt_sd, 0.0), 5),
        "seed_sd": _g(g.seed_sd, 5),
        "prompt_sd": _g(g.prompt_sd, 5),
        "complexity_slope_z": _g(g.complexity_slope, 5),
        "strategies": strategies,
        "fit": {
            "images": d["images"],
            "prompts": d["prompts"],
            "seeds_per_cell": _g(d["seeds_per_cell"], 4),
            "complexity_range": [_g(v, 3) for v in d["complexity_range"]],
            "r2": _g(d["r2"], 3),
            "residual_sd": _g(d["residual_sd"], 4),
            "se_seed_sd": _g(d["se_seed_sd"], 3),
            "se_prompt_sd": _g(d["se_prompt_sd"], 3),
            "interaction_sd": _g(g.interaction_sd, 4),
            "f_interaction": _g(d["f_interaction"], 4),
            "p_interaction": _g(d["p_interaction"], 3),
            "f_prompt": _g(d["f_prompt"], 4),
            "p_prompt": _g(d["p_prompt"], 3),
            "share_at_0": _g(d["share_at_0"], 3),
            "share_at_10": _g(d["share_at_10"], 3),
        },
        "warnings": list(result.warnings),
    }
    header = [
        "# Generation part of a quality model (sim/model/quality.py), calibrated on a demonstration dataset D.",
        *_describe_source(result, meta),
        "# score = clip(mu(s, c) + u_p + eps, 0, 10), mu(s, c) = anchor + scale * (complexity_slope_z * (c - c_ref)",
        "#   + offset_z[s] + slope_z[s] * (c - c_ref)), with scale = 1 (z-units are score points).",
        "# Fixed effects: OLS of generation_score on strategy x (1, c - c_ref); SEs cluster-robust by prompt.",
        "# seed_sd_z: within (prompt, strategy) SD across seeds; prompt_sd_z: nested-ANOVA prompt component",
        "# ((MS_prompt - MS_cell) / n, floored at 0). Scores clipped at 0/10 bias both near the bounds (see fit).",
        "# mean_at_c / se_mean_at_c: fitted mean score (and SE) at c = 0, 0.5, 1, for readers.",
        f"# Damage part: {result.damage_path.name}. Use with quality: {{generation: {path.name}, damage: {result.damage_path.name}}}",
        "",
    ]
    write_text(path, "\n".join(header) + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=110))


def damage_yaml_entry(
    e50: float, k: float, undecodable_per_error: float, fit: dict[str, Any], *, trials: int, decodable_trials: int,
    n_bits_range: list[int],
) -> dict[str, Any]:
    """One image format's entry of a damage YAML (``quality_damage.yaml`` schema) with its fit diagnostics."""
    return {
        "e50": _g(e50),
        "k": _g(k),
        "undecodable_per_error": _g(undecodable_per_error),
        "fit": {
            "rmse_retention_samples": _g(fit["rmse_retention_samples"], 3),
            "rmse_retention_binned": _g(fit["rmse_retention_binned"], 3),
            "rmse_undecodable_binned": _g(fit["rmse_undecodable_binned"], 3),
            "rmse_score_share_binned": _g(fit["rmse_score_share_binned"], 3),
            "trials": int(trials),
            "decodable_trials": int(decodable_trials),
            "mean_n_bits": int(round(fit["mean_n_bits"])),
            "n_bits_range": [int(v) for v in n_bits_range],
        },
    }


def _write_damage_yaml(path: Path, result: CalibrationResult, meta: dict[str, Any]) -> None:
    f = result.damage
    d = f.diagnostics
    entry = damage_yaml_entry(
        f.e50, f.k, f.undecodable_per_error, d, trials=d["rows"], decodable_trials=d["decodable_rows"],
        n_bits_range=d["n_bits_range"],
    )
    entry["fit"]["errors_range"] = [_g(v, 3) for v in d["errors_range"]]
    lines = [
        "# Damage part of a quality model (sim/model/quality.py), calibrated on a demonstration dataset D.",
        *_describe_source(result, meta),
        "# With e = ber * n_bits the expected bit errors in an image:",
        "#   retention(e)     = 1 / (1 + (e / e50) ** k)        score share kept by images that decode",
        "#   p_undecodable(e) = 1 - exp(-e * undecodable_per_error)",
        "# retention: least squares (scipy curve_fit) of received / generation score over the decodable rows;",
        "# undecodable_per_error: maximum likelihood (the estimators of scripts/fit_damage_model.py).",
        f"#   {f.image_format}: e50={f.e50:.4g} k={f.k:.3g} undecodable_per_error={f.undecodable_per_error:.3g}; "
        f"RMSE retention {d['rmse_retention_samples']:.3f} per row, {d['rmse_retention_binned']:.3f} binned",
        "# Per bin of expected errors e: rows; undecodable share (observed / fit); retention of the decodable",
        "# images (observed / fit); score share kept over all images (observed / fit).",
        "#      mean e   rows   undecodable   retention       score share",
    ]
    for r in f.table:
        ret = "    -  /  -  " if math.isnan(r["retention"]) else f"{r['retention']:.3f} / {r['retention_fit']:.3f}"
        lines.append(
            f"#   {r['mean_errors']:9.3g} {r['rows']:6d}   {r['undecodable']:.2f} / {r['p_undecodable_fit']:.2f}"
            f"   {ret}   {r['score_share']:.3f} / {r['score_share_fit']:.3f}"
        )
    lines.append("")
    body = {"default_format": f.image_format, "formats": {f.image_format: entry}}
    write_text(path, "\n".join(lines) + yaml.safe_dump(body, sort_keys=False, default_flow_style=None))


def format_report(result: CalibrationResult) -> str:
    g, f = result.generation, result.damage
    d = g.diagnostics
    lines = [
        f"calibrated {result.source}: {d['images']} images, {d['prompts']} prompts, "
        f"{d['seeds_per_cell']:.1g} seeds per (prompt, strategy), complexity {d['complexity_range'][0]:.2f}-"
        f"{d['complexity_range'][1]:.2f}",
        f"generation: anchor {g.anchor:.3f} at c_ref {g.c_ref}, raw complexity slope {g.complexity_slope:+.3f}, "
        f"R^2 {d['r2']:.3f}",
        f"  seed_sd {g.seed_sd:.3f} (SE {d['se_seed_sd']:.3f}), prompt_sd {g.prompt_sd:.3f} (SE {d['se_prompt_sd']:.3f}, "
        f"F {d['f_prompt']:.2f}), prompt x strategy SD {g.interaction_sd:.3f} (F {d['f_interaction']:.2f}, "
        f"p {d['p_interaction']:.2g})",
        f"  scores at 0: {d['share_at_0']:.2%}, at 10: {d['share_at_10']:.2%}",
        "  strategy              mean at c=0       c=0.5        c=1   (cluster-robust SE)",
    ]
    for st in STRATEGIES:
        m = [g.mean_score(c, st.id) for c in (0.0, 0.5, 1.0)]
        se = [g.mean_score_se(c, st.id) for c in (0.0, 0.5, 1.0)]
        lines.append(
            f"  {st.id} {st.name:18s} " + "  ".join(f"{mi:5.2f} ({si:.2f})" for mi, si in zip(m, se))
        )
    fd = f.diagnostics
    lines += [
        f"damage ({f.image_format}): e50 {f.e50:.4g} expected errors, k {f.k:.3g}, undecodable_per_error "
        f"{f.undecodable_per_error:.3g}; {fd['rows']} rows ({fd['undecodable_rows']} undecodable), expected errors "
        f"{fd['errors_range'][0]:.3g}-{fd['errors_range'][1]:.3g}",
        f"  RMSE retention {fd['rmse_retention_samples']:.3f} per row, {fd['rmse_retention_binned']:.3f} binned; "
        f"P(undecodable) {fd['rmse_undecodable_binned']:.3f} binned; score share {fd['rmse_score_share_binned']:.3f} binned",
    ]
    lines += [f"warning: {w}" for w in result.warnings]
    lines += [f"wrote {result.generation_path} and {result.damage_path}"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# round trip: compare a fit with the model that generated D
# ---------------------------------------------------------------------------


def compare_with_model(
    result: CalibrationResult,
    truth: QualityModel,
    complexities: tuple[float, ...] = (0.0, 1.0),
    realized: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per parameter: ``true``, ``recovered``, ``error`` and the fit's ``se`` (NaN if none).

    Generation: the mean score of every strategy at each of ``complexities``, each
    strategy's difference from raw there, ``seed_sd`` and ``prompt_sd`` (points).
    Damage: ``e50``, ``k``, ``undecodable_per_error``, and the retention at
    ``e50 / 4``, ``e50`` and ``4 e50`` of the true model.

    ``realized``: D's prompts with their ``complexity`` and the prompt effect
    ``offset`` the generating model actually drew (surrogate:
    ``QualityModel.prompt_offset(prompt, key)``). Then group ``conditional`` adds the
    targets given those draws, whose only remaining error is seed noise: the means
    shifted by the least-squares line of the offsets on complexity, and the
    offsets' SD about that line (``P - 2`` degrees of freedom, as the ANOVA).
    """
    g = result.generation
    rows: list[dict[str, Any]] = []

    def add(group: str, name: str, true: float, rec: float, se: float = math.nan) -> None:
        rows.append({"group": group, "parameter": name, "true": float(true), "recovered": float(rec),
                     "error": float(rec - true), "se": float(se)})

    for c in complexities:
        for st in range(N_STRATEGIES):
            add("mean", f"mean s{st} c={c:g}", truth.mean_score(c, st), g.mean_score(c, st), g.mean_score_se(c, st))
    for c in complexities:
        for st in range(1, N_STRATEGIES):
            add(
                "difference",
                f"s{st} - s0 c={c:g}",
                float(truth.mean_score(c, st) - truth.mean_score(c, 0)),
                g.mean_score(c, st) - g.mean_score(c, 0),
                g.difference_se(c, st),
            )
    add("spread", "seed_sd", truth.seed_sd, g.seed_sd, g.diagnostics["se_seed_sd"])
    add("spread", "prompt_sd", truth.prompt_sd, g.prompt_sd, g.diagnostics["se_prompt_sd"])
    if realized is not None:
        c_p = realized["complexity"].to_numpy(float) - g.c_ref
        u_p = realized["offset"].to_numpy(float)
        x = np.column_stack([np.ones_like(c_p), c_p])
        (alpha, beta), *_ = np.linalg.lstsq(x, u_p, rcond=None)
        resid = u_p - x @ np.array([alpha, beta])
        n_img = g.diagnostics["images"]
        seed_var = g.seed_sd**2
        per_strategy = n_img / N_STRATEGIES  # images per strategy
        sxx = float(((c_p - c_p.mean()) ** 2).sum())
        k = per_strategy / len(c_p)  # images per prompt and strategy
        for c in complexities:
            d = c - g.c_ref
            se = math.sqrt(seed_var * (1.0 / per_strategy + (d - c_p.mean()) ** 2 / (k * sxx)))
            for st in range(N_STRATEGIES):
                add("conditional", f"mean s{st} c={c:g} | offsets", float(truth.mean_score(c, st)) + alpha + beta * d,
                    g.mean_score(c, st), se)
        n_per_prompt = n_img / len(c_p)
        realized_var = float((resid**2).sum() / (len(c_p) - 2))
        # noise of the ANOVA estimate given the offsets: cross term and seed-noise terms (delta method)
        var_hat = 4 * realized_var * seed_var / n_per_prompt / (len(c_p) - 2) + 2 * (seed_var / n_per_prompt) ** 2 * (
            1.0 / (len(c_p) - 2) + 1.0 / max(g.diagnostics["df_cell"], 1)
        )
        realized_sd = math.sqrt(realized_var)
        add("conditional", "prompt_sd | offsets", realized_sd, g.prompt_sd, math.sqrt(var_hat) / (2 * max(realized_sd, 1e-9)))
    t, f = truth.damage, result.damage
    add("damage", "e50", t.e50, f.e50)
    add("damage", "k", t.k, f.k)
    add("damage", "undecodable_per_error", t.undecodable_per_error, f.undecodable_per_error)
    fitted = f.params()
    for mult in (0.25, 1.0, 4.0):
        e = mult * t.e50
        add("damage", f"retention(e={e:.3g})", float(t.retention_of_errors(e)), float(fitted.retention_of_errors(e)))
    return pd.DataFrame(rows)


def damage_reference(
    images: list, bers: np.ndarray, repeats: int, rng: np.random.Generator, ssim_gamma: float = 2.0
) -> DamageParams:
    """Damage parameters by the Monte Carlo of ``scripts/fit_damage_model.py`` on the given images.

    Every image (``GeneratedImage`` with a positive generation score) goes through
    :func:`sim.model.channel.flip_bits` ``repeats`` times at each BER, is scored by the
    fidelity assessor, and the same estimators as :func:`fit_damage` are applied.
    It is the truth a calibration of the surrogate + fidelity pair should recover
    for images of that size and format.
    """
    from sim.assessment.fidelity import FidelityAssessor, damage_trials

    formats = {im.format for im in images}
    if len(formats) != 1:
        raise ValueError(f"images must share one format, got {sorted(formats)}")
    trials = damage_trials(images, bers, repeats, rng, FidelityAssessor(ssim_gamma))
    e50, k, _ = fit_retention(trials.errors[trials.decodable], trials.ratio[trials.decodable])
    u = fit_undecodable(trials.errors, ~trials.decodable)
    return DamageParams(e50=e50, k=k, undecodable_per_error=u, source=f"Monte Carlo, {trials.ber.size} trials")


__all__ = [
    "C_REF",
    "CalibrationError",
    "CalibrationResult",
    "DamageFit",
    "E50_NO_DAMAGE",
    "GenerationFit",
    "calibrate",
    "compare_with_model",
    "damage_reference",
    "damage_frame",
    "damage_path_for",
    "fit_damage",
    "fit_generation",
    "fit_retention",
    "fit_undecodable",
    "images_frame",
    "retention_curve",
]
