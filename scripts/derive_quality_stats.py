#!/usr/bin/env python
"""Derive the generation-quality model (sim/data/quality_generation.yaml) from human ratings.

Usage::

    python scripts/derive_quality_stats.py [--data DIR] [--out sim/data/quality_generation.yaml]

``--data`` defaults to ``../shared/data/aigc-quality`` relative to the repository
root (the public rating datasets listed in its MANIFEST.txt); the data files are
read, never copied. Without ``--out`` the summary is printed and nothing is
written.

What it computes, for Stable Diffusion images (all effects in z-units: the
total SD of one SD image's rating in that dataset; CIs are 95 %):

* AIGCIQA2023 (``stable-diffusion`` rows, 100 prompts x 4 seeds, ``quality_mos``):
  seed-to-seed vs prompt-to-prompt variance components (one-way ANOVA), the
  expected best-of-k gain for k = 1..4 (exact over the 4 seeds' k-subsets, CIs by
  bootstrapping prompts) against a normal model with the seed SD, the slope of
  prompt-mean quality on prompt complexity, and means by the ``style`` and
  ``class`` columns;
* AGIQA-3k (``sd1.5`` rows: 300 prompts x 4 generation settings, ``mos_quality``):
  variance components (two-way: prompt + setting), effects of the detail / view /
  colour / lighting adjectives (``adj1``/``adj2``) and style modifiers (OLS on
  prompt means with prompt complexity as covariate, HC3 standard errors), their
  interactions with complexity, and how the prompt-to-prompt variance grows with
  the number of modifiers (heterogeneity of modifier effects across prompts);
* AGIQA-1k (``deepai`` = Stable Diffusion 2.0 rows, factorial prompts): prompt
  content vs residual variance, realistic vs anime style;
* BestPrompts ``keywords.csv``: usage counts of prompt keywords, used to weight
  the AGIQA-3k modifiers that stand for a "quality booster".

Then it maps the effects to the simulator's seven strategies and the 0-10
assessor scale (``build_model``); every choice that is not data is a named
constant in the CHOICES block below and is listed in docs/quality_model.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sim.model.quality import (  # noqa: E402
    COMPLEXITY_MAX_WORDS,
    COMPLEXITY_MIN_WORDS,
    ASPECTS,
    N_STRATEGIES,
    STRATEGY_TABLES,
    expected_max_normal,
    prompt_complexity,
)

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "aigc-quality"
DEFAULT_OUT = REPO_ROOT / "sim" / "data" / "quality_generation.yaml"
Z95 = float(stats.norm.ppf(0.975))
BOOTSTRAP_SEED = 20240501
N_BOOT = 2000

#: Sources as named in the data directory's MANIFEST.txt (repo @ commit, licence).
SOURCES = {
    "AIGCIQA2023": "github wangjiarui153/AIGCIQA2023; AIGCIQA2023.csv from refs/pull/4/head @68283bb "
    "(no licence file); AIGCIQA2023_with_model.csv = its rows joined with pic-index.xlsx row order",
    "AGIQA-3k": "github lcysyzxdxc/AGIQA-3k-Database @30ded2b (MIT), data.csv",
    "AGIQA-1k": "github lcysyzxdxc/AGIQA-1k-Database @7a8d9f2 (MIT), AIGC_MOS_Zscore.xlsx",
    "BestPrompts": "github Toloka/BestPrompts @5856311 (CC-BY data / Apache code), keywords.csv "
    "(annotation.csv missing from the snapshot)",
}

# ---------------------------------------------------------------------------
# CHOICES: everything below that is not measured. See docs/quality_model.md.
# ---------------------------------------------------------------------------

#: Score of the raw prompt of a typical prompt (zero prompt effect) at complexity C_REF.
ANCHOR = 6.0
#: Points on the 0-10 scale per z-unit (total SD of one SD image's quality).
SCALE = 1.25
#: Complexity at which ANCHOR holds and per-strategy offsets are stated.
C_REF = 0.5

#: Which measured modifiers stand for each aspect of Table II (AGIQA-3k, sd1.5 rows).
#: Each entry: {modifier: weight}; the aspect's gain is the weighted mean of the effects.
ASPECT_MODIFIERS: dict[str, dict[str, float]] = {
    # object description: a detail-adding adjective about the subject
    "object": {"hyper detail": 1.0},
    # environment: the scene / viewpoint adjectives (how much of the surroundings is shown)
    "environment": {"long-shot": 1.0, "elevation view": 1.0, "top view": 1.0},
    # mood: the colour-temperature adjectives
    "mood": {"warm color": 1.0, "cold color": 1.0},
    # lighting: the lighting adjectives
    "lighting": {"HDR lighting": 1.0, "soft lighting": 1.0},
    # quality booster: filled in from BestPrompts keyword counts (BOOSTER_KEYWORDS)
    # negative effects: NEGATIVE_FROM_BLUR x the effect of asking for "blurred detail"
}
#: BestPrompts keywords (keywords.csv) that each AGIQA-3k modifier stands for. The quality
#: booster's gain is the mean of these modifiers' effects weighted by the keywords' usage counts.
BOOSTER_KEYWORDS: dict[str, list[str]] = {
    "hyper detail": [
        "highly detailed", "sharp focus", "intricate", "sharp", "focus", "finely detailed features",
        "detailed", "intricate details", "insanely detailed", "ultra detailed", "high detail",
        "intricate sharp details", "ultra - detailed", "high definition",
    ],
    "HDR lighting": [
        "cinematic lighting", "dramatic lighting", "volumetric lighting", "ray tracing", "volumetric light",
    ],
    "soft lighting": ["studio lighting", "natural lighting"],
    "realistic style": [
        "realistic", "hyper realistic", "photorealistic", "hyper realism", "hyperrealistic",
        "ultra realistic", "photo realism", "photorealism", "photoreal",
    ],
}
#: Negative effects ("blurry, low quality, deformed, ..." as a negative prompt): this multiple of
#: the measured effect of *asking for* "blurred detail" (reversed sign, halved: a negative prompt
#: at best removes what the positive phrase adds). Weak evidence, stated as such.
NEGATIVE_FROM_BLUR = -0.5

#: Complexity slope of each aspect's gain, in units of the slope size m (modelling choice; m is
#: set from the measured heterogeneity of modifier effects across prompts, see build_model).
#: object/environment -1: a complex prompt already describes its object and scene, so these add
#: less to it and more to a bare one (AGIQA-3k's detail/view x complexity interactions have wide
#: CIs that include -m). mood/lighting/quality/negative 0: no evidence either way (AGIQA-3k's
#: colour/lighting/style x complexity CIs straddle 0; no data on negative prompts).
ASPECT_SLOPE_SIGNS: dict[str, float] = {
    "object": -1.0,
    "environment": -1.0,
    "mood": 0.0,
    "lighting": 0.0,
    "quality": 0.0,
    "negative": 0.0,
}
STRATEGY_NAMES = ("raw", "object", "environment", "mood", "lighting", "quality_booster", "negative_effects")

#: The ``ratings`` profile (``--profile ratings``, ``sim/data/quality_generation_ratings.yaml``): Table II as
#: printed, and what ``scripts/derive_strategy_effects.py`` derived (``sim/data/quality_strategy_effects.yaml``):
#: the best-of-k factor of the four normal AIGCIQA2023 generators, the pooled modifier x complexity slope for
#: every aspect (the data's sign), and the across-prompt SD of a modifier's effect for every aspect.
STRATEGY_EFFECTS = REPO_ROOT / "sim" / "data" / "quality_strategy_effects.yaml"
#: Share of an aspect's prompt-specific variance that follows the prompt's words (choice: AGIQA-1k's style
#: effect varies with the main object, SD 0.36 z, and with the activity, SD 0.35 z, not with the place; the
#: object's class explains a sixth to a half of it; the rest is taken as the prompt's own).
RATINGS_CONTENT_SHARE = 0.5
#: Share of the content part that follows the prompt's category (what it is about), the rest its words (choice:
#: AGIQA-1k's object class explains about half of the style effect's variation across main objects, with a
#: wide CI; the categories are the shipped prompt set's).
RATINGS_CATEGORY_SHARE = 0.5
#: Seed of the content words' effects in the ``ratings`` profile (part of the model; any value is a valid world).
RATINGS_CONTENT_SEED = 0
PROFILES = {"classic": "sim/data/quality_generation.yaml", "ratings": "sim/data/quality_generation_ratings.yaml",
            "paper": "sim/data/quality_generation_paper.yaml"}
#: The ``paper`` profile is the ``ratings`` model calibrated to the D3PG paper's prompt-engineering results
#: (single-image success, thresholds uniform on [7.5, 8.5], over the shipped prompt set): raw prompts 3/55,
#: the empirical strategy (always 6) 9/55, and its IRL policy 6.3 x 3/55 (= 2.1 x 9/55), about 19/55, taken as
#: the text-known optimum (the best a policy reading the prompt can do). Three numbers fit three parameters:
#: the anchor (raw), a common scale of the aspects' gains (always 6) and of their per-prompt SDs (optimum).
PAPER_TARGETS = {"raw": 3 / 55, "always_6": 9 / 55, "optimum": 6.3 * 3 / 55}
#: In the paper profile all of a strategy's per-prompt effect follows the prompt's words (a policy that reads
#: the prompt can learn it, as the paper's IRL policy is taken to).
PAPER_CONTENT_SHARE = 1.0
#: ... and none of it follows the prompt's category, all its words: with category-level effects the three targets
#: fit only with absurd values (a category's shared effect moves every prompt of it, so always-6 cannot stay low
#: while the optimum is high); ``--paper-category-share K`` prints the fit for another share.
PAPER_CATEGORY_SHARE = 0.0

#: The paper's reference numbers used only to check the anchor/scale choice (printed, not fitted).
PAPER = {
    "raw_single_round_success": 3 / 55,
    "learned_single_round_success": 9 / 55,
    "learned_over_always_6": 2.1,
    "threshold_range": (7.5, 8.5),
}


# ---------------------------------------------------------------------------
# Small statistics helpers
# ---------------------------------------------------------------------------


def ci(est: float, se: float) -> list[float]:
    """Normal-approximation 95 % CI."""
    return [est - Z95 * se, est + Z95 * se]


def ols_hc3(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS coefficients and their HC3 (heteroskedasticity-robust) covariance."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    xtx_inv = np.linalg.inv(X.T @ X)
    lev = np.einsum("ij,jk,ik->i", X, xtx_inv, X)
    meat = (X * (resid / (1.0 - lev))[:, None] ** 2).T @ X
    return beta, xtx_inv @ meat @ xtx_inv


def icc_from_f(f_obs: float, df1: int, df2: int, n: int) -> tuple[float, list[float]]:
    """ICC = (F - 1) / (F + n - 1) and its exact F-based 95 % CI (balanced design)."""
    lo_f = f_obs / stats.f.ppf(0.975, df1, df2)
    hi_f = f_obs / stats.f.ppf(0.025, df1, df2)
    to_icc = lambda f: (f - 1.0) / (f + n - 1.0)  # noqa: E731
    return to_icc(f_obs), [to_icc(lo_f), to_icc(hi_f)]


def best_of_k_subsets(values: np.ndarray, k: int) -> np.ndarray:
    """Per row: the mean over all k-subsets of the row's values of the subset's maximum."""
    v = np.sort(values, axis=1)
    m = v.shape[1]
    # the j-th smallest (1-based) is the max of C(j-1, k-1) of the C(m, k) subsets
    w = np.array([math.comb(j - 1, k - 1) for j in range(1, m + 1)], dtype=float) / math.comb(m, k)
    return v @ w


def rnd(x: Any, sig: int = 4) -> Any:
    """Round floats (recursively) to ``sig`` significant digits for the YAML."""
    if isinstance(x, dict):
        return {k: rnd(v, sig) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rnd(v, sig) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if abs(x) < 1e-12 or not math.isfinite(x):
            return 0.0 if math.isfinite(x) else x
        return float(f"{x:.{sig}g}")
    return x


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_aigciqa2023(data_dir: Path) -> pd.DataFrame:
    """All rows of AIGCIQA2023_with_model.csv with a ``complexity`` column."""
    df = pd.read_csv(Path(data_dir) / "AIGCIQA2023" / "AIGCIQA2023_with_model.csv")
    df["complexity"] = df["prompt"].map(prompt_complexity)
    return df


def _strip_modifiers(row: pd.Series) -> str:
    text = str(row["prompt"])
    for col in ("style", "adj2", "adj1"):
        mod = row[col]
        if isinstance(mod, str):
            text = text.rstrip().rstrip(",").rstrip()
            if not text.endswith(mod):
                raise ValueError(f"AGIQA-3k prompt {row['prompt']!r} does not end with its modifier {mod!r}")
            text = text[: -len(mod)]
    return text.rstrip().rstrip(",").strip()


def load_agiqa3k(data_dir: Path) -> pd.DataFrame:
    """AGIQA-3k data.csv with model / setting / prompt index parsed from the image name,
    the base prompt (modifiers stripped) and its complexity."""
    df = pd.read_csv(Path(data_dir) / "AGIQA-3k-Database" / "data.csv")
    parts = df["name"].str.extract(r"^(?P<model>.+?)_(?P<setting>[a-z]+)_(?P<idx>\d+)\.")
    if parts.isna().any().any():
        raise ValueError("AGIQA-3k: unexpected image names")
    df = pd.concat([df, parts], axis=1)
    df["idx"] = df["idx"].astype(int)
    df["base"] = df.apply(_strip_modifiers, axis=1)
    df["complexity"] = df["base"].map(prompt_complexity)
    df["n_mod"] = df[["adj1", "adj2", "style"]].notna().sum(axis=1)
    return df


def load_agiqa1k(data_dir: Path) -> pd.DataFrame:
    """AGIQA-1k rows of the Stable Diffusion 2.0 ('deepai') generator with their factor levels."""
    df = pd.read_excel(Path(data_dir) / "AGIQA-1k-Database" / "AIGC_MOS_Zscore.xlsx")
    df = df[df["Image"].str.startswith("deepai_")].copy()
    f = df["Image"].str.extract(r"deepai_(\d+)_(\d+)_(\d+)_(\d+)\.").astype(int)
    f.columns = ["main_object", "second_object", "place", "style"]
    return pd.concat([df, f], axis=1)


def load_bestprompts_keywords(data_dir: Path) -> pd.DataFrame:
    return pd.read_csv(Path(data_dir) / "BestPrompts" / "keywords.csv")


# ---------------------------------------------------------------------------
# AIGCIQA2023
# ---------------------------------------------------------------------------


def aigciqa_variance(df: pd.DataFrame, model: str = "stable-diffusion", col: str = "quality_mos") -> dict:
    """One-way random-effects ANOVA of ``col`` over prompts (seeds within prompt)."""
    d = df[df["model"] == model]
    wide = d.pivot(index="prompt_idx", columns="seed_idx", values=col).to_numpy()
    p, n = wide.shape
    msw = float(wide.var(axis=1, ddof=1).mean())
    msb = float(n * wide.mean(axis=1).var(ddof=1))
    f_obs = msb / msw
    df1, df2 = p - 1, p * (n - 1)
    icc, icc_ci = icc_from_f(f_obs, df1, df2, n)
    sb2 = (msb - msw) / n
    resid = (wide - wide.mean(axis=1, keepdims=True)).ravel()
    return {
        "n_prompts": p,
        "seeds_per_prompt": n,
        "mean": float(wide.mean()),
        "total_sd": float(wide.std(ddof=1)),
        "seed_sd": math.sqrt(msw),
        "sd_of_prompt_means": float(wide.mean(axis=1).std(ddof=1)),
        "prompt_sd": math.sqrt(max(sb2, 0.0)),
        "F": f_obs,
        "p_F_below": float(stats.f.cdf(f_obs, df1, df2)),
        "icc": icc,
        "icc_ci": icc_ci,
        "within_prompt_skewness": float(stats.skew(resid)),
    }


def aigciqa_other_models_icc(df: pd.DataFrame) -> dict:
    """ICC of quality_mos for every other model of AIGCIQA2023 (same design), for comparison."""
    out = {}
    for model in sorted(set(df["model"]) - {"stable-diffusion"}):
        v = aigciqa_variance(df, model)
        out[model] = {"icc": v["icc"], "icc_ci": v["icc_ci"], "seed_sd": v["seed_sd"], "prompt_sd": v["prompt_sd"]}
    return out


def aigciqa_best_of_k(df: pd.DataFrame, model: str = "stable-diffusion", col: str = "quality_mos") -> dict:
    """Expected best-of-k gain over the prompt mean, k = 1..4, empirical vs normal."""
    d = df[df["model"] == model]
    wide = d.pivot(index="prompt_idx", columns="seed_idx", values=col).to_numpy()
    p, m = wide.shape
    means = wide.mean(axis=1)
    var_w = wide.var(axis=1, ddof=1)
    gains = np.column_stack([best_of_k_subsets(wide, k) - means for k in range(1, m + 1)])  # p x m
    e_k = expected_max_normal(0.0, 1.0, np.arange(1, m + 1))
    seed_sd = math.sqrt(var_w.mean())
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    idx = rng.integers(0, p, size=(N_BOOT, p))
    boot_gain = gains[idx].mean(axis=1)  # B x m
    boot_sd = np.sqrt(var_w[idx].mean(axis=1))  # B
    boot_ratio = boot_gain / boot_sd[:, None]
    # least-squares factor f: empirical gain = f * seed_sd * e_k over k = 2..m
    ek = e_k[1:]
    f_hat = float(gains.mean(axis=0)[1:] @ ek / (seed_sd * ek @ ek))
    f_boot = boot_ratio[:, 1:] @ ek / (ek @ ek)
    out: dict[str, Any] = {"n_prompts": p, "seed_sd": seed_sd, "k": {}}
    for k in range(1, m + 1):
        g = float(gains[:, k - 1].mean())
        out["k"][k] = {
            "gain": g,
            "gain_seed_sd": g / seed_sd,
            "gain_seed_sd_ci": [float(q) for q in np.percentile(boot_ratio[:, k - 1], [2.5, 97.5])],
            "normal_gain_seed_sd": float(e_k[k - 1]),
        }
    out["normal_factor"] = f_hat
    out["normal_factor_ci"] = [float(q) for q in np.percentile(f_boot, [2.5, 97.5])]
    return out


def complexity_slope(prompt_means_z: np.ndarray, complexity: np.ndarray) -> dict:
    """Slope of prompt-mean quality (z) on complexity, HC3 SE."""
    c = np.asarray(complexity, dtype=float)
    X = np.column_stack([np.ones_like(c), c - c.mean()])
    beta, cov = ols_hc3(X, prompt_means_z)
    se = math.sqrt(cov[1, 1])
    return {"slope_z": float(beta[1]), "se": se, "ci": ci(float(beta[1]), se), "n_prompts": int(len(c)),
            "complexity_mean": float(c.mean()), "complexity_sd": float(c.std(ddof=1))}


def aigciqa_complexity(df: pd.DataFrame) -> dict:
    """Quality vs prompt complexity: SD rows, and the other 5 models pooled (z within model)."""
    sd = df[df["model"] == "stable-diffusion"]
    unit = float(sd["quality_mos"].std(ddof=1))
    pm = sd.groupby("prompt_idx").agg(q=("quality_mos", "mean"), c=("complexity", "first"))
    out = {"stable_diffusion": complexity_slope(((pm["q"] - pm["q"].mean()) / unit).to_numpy(), pm["c"].to_numpy())}
    other = df[df["model"] != "stable-diffusion"].copy()
    other["z"] = other.groupby("model")["quality_mos"].transform(lambda x: (x - x.mean()) / x.std(ddof=1))
    po = other.groupby("prompt_idx").agg(q=("z", "mean"), c=("complexity", "first"))
    out["other_models_pooled"] = complexity_slope(po["q"].to_numpy(), po["c"].to_numpy())
    return out


def aigciqa_category_means(df: pd.DataFrame, col: str) -> dict:
    """Mean SD quality (z) per prompt category (``style`` or ``class``), CI from the prompt means."""
    sd = df[df["model"] == "stable-diffusion"]
    unit = float(sd["quality_mos"].std(ddof=1))
    mu = float(sd["quality_mos"].mean())
    pm = sd.groupby(["prompt_idx", col]).agg(q=("quality_mos", "mean"), c=("complexity", "first")).reset_index()
    out = {}
    for cat, g in pm.groupby(col):
        z = (g["q"] - mu) / unit
        se = float(z.std(ddof=1) / math.sqrt(len(z))) if len(z) > 1 else float("nan")
        out[str(cat)] = {"mean_z": float(z.mean()), "ci": ci(float(z.mean()), se) if len(z) > 1 else None,
                         "n_prompts": int(len(z)), "complexity_mean": float(g["c"].mean())}
    return out


# ---------------------------------------------------------------------------
# AGIQA-3k
# ---------------------------------------------------------------------------


def agiqa3k_sd(df: pd.DataFrame, model: str = "sd1.5", settings: tuple[str, ...] | None = None,
               col: str = "mos_quality") -> tuple[pd.DataFrame, float, pd.DataFrame]:
    """Rows of ``model`` with the setting mean removed (``r``), the unit (SD of ``r``), and prompt-level table."""
    d = df[df["model"] == model] if model != "all" else df
    if settings is not None:
        d = d[d["setting"].isin(settings)]
    d = d.copy()
    d["cell"] = d["model"] + "/" + d["setting"]
    d["r"] = d[col] - d.groupby("cell")[col].transform("mean")
    unit = float(d["r"].std(ddof=1))
    pm = d.groupby("idx").agg(
        r=("r", "mean"), n_images=("r", "size"), complexity=("complexity", "first"),
        adj1=("adj1", "first"), adj2=("adj2", "first"), style=("style", "first"), n_mod=("n_mod", "first"),
    )
    pm["z"] = pm["r"] / unit
    return d, unit, pm


def agiqa3k_variance(df: pd.DataFrame) -> dict:
    """Two-way ANOVA (prompt x setting, one image per cell) of sd1.5 mos_quality, in z-units."""
    d, unit, _ = agiqa3k_sd(df)
    wide = d.pivot(index="idx", columns="setting", values="r").to_numpy() / unit
    p, v = wide.shape
    row = wide.mean(axis=1, keepdims=True)
    col = wide.mean(axis=0, keepdims=True)
    resid = wide - row - col + wide.mean()
    mse = float((resid**2).sum() / ((p - 1) * (v - 1)))
    msp = float(v * row.var(ddof=1))
    f_obs = msp / mse
    icc, icc_ci = icc_from_f(f_obs, p - 1, (p - 1) * (v - 1), v)
    return {
        "n_prompts": p, "settings": sorted(d["setting"].unique()), "unit_mos": unit,
        "within_prompt_sd_z": math.sqrt(mse), "prompt_sd_z": math.sqrt(max((msp - mse) / v, 0.0)),
        "F": f_obs, "icc": icc, "icc_ci": icc_ci,
    }


def _modifier_design(pm: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    adjs = sorted(set(pm["adj1"].dropna()) | set(pm["adj2"].dropna()))
    styles = sorted(pm["style"].dropna().unique())
    cols = [np.ones(len(pm)), (pm["complexity"] - pm["complexity"].mean()).to_numpy()]
    names = ["const", "complexity"]
    for a in adjs:
        cols.append(((pm["adj1"] == a) | (pm["adj2"] == a)).astype(float).to_numpy())
        names.append(a)
    for s in styles:
        cols.append((pm["style"] == s).astype(float).to_numpy())
        names.append(s)
    return np.column_stack(cols), names


def modifier_regression(pm: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """OLS of prompt-mean z on complexity + one indicator per adjective and style (vs none), HC3."""
    X, names = _modifier_design(pm)
    beta, cov = ols_hc3(X, pm["z"].to_numpy())
    return beta, cov, names


def agiqa3k_modifiers(df: pd.DataFrame, model: str = "sd1.5", settings: tuple[str, ...] | None = None,
                      col: str = "mos_quality") -> dict:
    """Per-modifier effects (z, 95 % CI, prompts carrying it) and the complexity slope."""
    _, unit, pm = agiqa3k_sd(df, model, settings, col)
    beta, cov, names = modifier_regression(pm)
    se = np.sqrt(np.diag(cov))
    out: dict[str, Any] = {"n_prompts": int(len(pm)), "n_images": int(pm["n_images"].sum()), "unit_mos": unit,
                           "complexity_mean": float(pm["complexity"].mean()), "effects": {}}
    for i, name in enumerate(names):
        if name == "const":
            continue
        n_with = (int(((pm["adj1"] == name) | (pm["adj2"] == name) | (pm["style"] == name)).sum())
                  if name != "complexity" else int(len(pm)))
        out["effects"][name] = {"effect_z": float(beta[i]), "ci": ci(float(beta[i]), float(se[i])), "n_prompts": n_with}
    return out


def linear_combination(weights: dict[str, float], beta: np.ndarray, cov: np.ndarray, names: list[str]) -> tuple[float, float]:
    """Estimate and SE of sum_m w_m * beta_m (weights normalised to sum 1)."""
    w = np.zeros(len(names))
    total = sum(weights.values())
    for name, wt in weights.items():
        w[names.index(name)] = wt / total
    return float(w @ beta), float(math.sqrt(w @ cov @ w))


def bestprompts_booster_weights(kw: pd.DataFrame) -> dict:
    """Usage counts of BestPrompts keywords matched to AGIQA-3k modifiers (BOOSTER_KEYWORDS)."""
    counts = dict(zip(kw["keyword"].str.strip(), kw["cnt"].astype(int)))
    unknown = [k for ks in BOOSTER_KEYWORDS.values() for k in ks if k not in counts]
    if unknown:
        raise ValueError(f"BestPrompts keywords.csv lacks {unknown}")
    weights = {m: int(sum(counts[k] for k in ks)) for m, ks in BOOSTER_KEYWORDS.items()}
    matched = sum(weights.values())
    return {"weights": weights, "matched_count": matched, "total_count": int(sum(counts.values())),
            "matched_share": matched / sum(counts.values()), "n_keywords": len(counts)}


def agiqa3k_aspects(df: pd.DataFrame, booster: dict) -> dict:
    """Gain of each Table II aspect, as a combination of measured modifier effects (z, CI)."""
    _, _, pm = agiqa3k_sd(df)
    beta, cov, names = modifier_regression(pm)
    out = {}
    for aspect, weights in ASPECT_MODIFIERS.items():
        est, se = linear_combination(weights, beta, cov, names)
        out[aspect] = {"gain_z": est, "ci": ci(est, se), "from": dict(weights)}
    w = {m: float(c) for m, c in booster["weights"].items()}
    est, se = linear_combination(w, beta, cov, names)
    out["quality"] = {"gain_z": est, "ci": ci(est, se), "from": w}
    est, se = linear_combination({"blurred detail": 1.0}, beta, cov, names)
    out["negative"] = {"gain_z": NEGATIVE_FROM_BLUR * est, "ci": sorted(ci(NEGATIVE_FROM_BLUR * est, abs(NEGATIVE_FROM_BLUR) * se)),
                       "from": {"blurred detail": NEGATIVE_FROM_BLUR}}
    return out


def agiqa3k_interactions(df: pd.DataFrame) -> dict:
    """Aspect x complexity interactions (z per unit complexity), for any modifier of the aspect's group."""
    _, _, pm = agiqa3k_sd(df)
    groups = {
        "detail (hyper detail)": ["hyper detail"],
        "view (long-shot, elevation view, top view)": ["long-shot", "elevation view", "top view"],
        "colour (warm/cold color)": ["warm color", "cold color"],
        "lighting (HDR/soft lighting)": ["HDR lighting", "soft lighting"],
        "any style modifier": None,
        "any modifier (per modifier)": "count",
    }
    c = (pm["complexity"] - pm["complexity"].mean()).to_numpy()
    X0, names = _modifier_design(pm)
    out = {}
    for label, mods in groups.items():
        if mods is None:
            ind = pm["style"].notna().astype(float).to_numpy()
        elif mods == "count":
            ind = pm["n_mod"].astype(float).to_numpy()
        else:
            ind = (pm["adj1"].isin(mods) | pm["adj2"].isin(mods)).astype(float).to_numpy()
        X = np.column_stack([X0, ind * c])
        beta, cov = ols_hc3(X, pm["z"].to_numpy())
        se = math.sqrt(cov[-1, -1])
        out[label] = {"slope_z": float(beta[-1]), "ci": ci(float(beta[-1]), se)}
    return out


def agiqa3k_heterogeneity(df: pd.DataFrame) -> dict:
    """How the prompt-to-prompt variance (after the modifier fixed effects) grows with the number of modifiers.

    Per number of modifiers k (0..3): the variance of the prompt-level residuals of the
    modifier regression minus the share of setting-to-setting noise in a 4-image mean;
    the slope over k (weighted by prompts) is the variance a modifier adds, whose square
    root is the SD of a modifier's effect across prompts. CI by bootstrapping prompts.
    """
    d, unit, pm = agiqa3k_sd(df)
    beta, _, _ = modifier_regression(pm)
    X, _ = _modifier_design(pm)
    pm = pm.assign(e=pm["z"].to_numpy() - X @ beta)
    wide = d.pivot(index="idx", columns="setting", values="r") / unit
    noise = (wide.sub(wide.mean(axis=1), axis=0)).sub(wide.mean(axis=0) - wide.to_numpy().mean(), axis=1)
    v = wide.shape[1]
    mse_row = (noise**2).sum(axis=1) / (v - 1)  # per prompt; E = sigma^2 (P - 1) / P under the two-way model
    pm = pm.assign(mse=mse_row.reindex(pm.index).to_numpy())
    ks = np.sort(pm["n_mod"].unique())
    e_by_k = [pm.loc[pm["n_mod"] == k, "e"].to_numpy() for k in ks]
    mse_by_k = [pm.loc[pm["n_mod"] == k, "mse"].to_numpy() for k in ks]
    n_k = np.array([len(e) for e in e_by_k], dtype=float)
    w = n_k / n_k.sum()
    kc = ks - w @ ks

    def var_comp(e: np.ndarray, mse: np.ndarray) -> np.ndarray:
        # along the last axis: residual variance minus the noise share of a v-image mean
        return e.var(axis=-1, ddof=1) - mse.mean(axis=-1) / v

    var_k = np.array([var_comp(e, m) for e, m in zip(e_by_k, mse_by_k)])
    s_hat = float((w * kc) @ var_k / ((w * kc) @ kc))
    rng = np.random.default_rng(BOOTSTRAP_SEED + 1)
    boot_var = []
    for e, m in zip(e_by_k, mse_by_k):
        idx = rng.integers(0, len(e), size=(N_BOOT, len(e)))
        boot_var.append(var_comp(e[idx], m[idx]))
    boot = (w * kc) @ np.array(boot_var) / ((w * kc) @ kc)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {
        "by_n_modifiers": {int(k): {"prompt_var_z2": float(vk), "n_prompts": int(nk)} for k, vk, nk in zip(ks, var_k, n_k)},
        "var_per_modifier_z2": s_hat,
        "var_per_modifier_ci": [float(lo), float(hi)],
        "sd_per_modifier_z": math.sqrt(max(s_hat, 0.0)),
        "sd_per_modifier_ci": [math.sqrt(max(lo, 0.0)), math.sqrt(max(hi, 0.0))],
    }


def agiqa3k_within_sd_by_n_modifiers(df: pd.DataFrame) -> dict:
    """Setting-to-setting SD within prompt (z) by number of modifiers (reported, not used)."""
    d, unit, pm = agiqa3k_sd(df)
    wide = d.pivot(index="idx", columns="setting", values="r") / unit
    resid = wide.sub(wide.mean(axis=1), axis=0).sub(wide.mean(axis=0) - wide.to_numpy().mean(), axis=1)
    v = wide.shape[1]
    out = {}
    for k, g in pm.groupby("n_mod"):
        r = resid.loc[g.index].to_numpy()
        out[int(k)] = math.sqrt(float((r**2).sum() / (len(g) * (v - 1))))
    return out


# ---------------------------------------------------------------------------
# AGIQA-1k
# ---------------------------------------------------------------------------


def agiqa1k_sd20(df: pd.DataFrame) -> dict:
    """Additive factor model of Stable Diffusion 2.0 MOS over the prompt's factors (one image each)."""
    z = ((df["MOS"] - df["MOS"].mean()) / df["MOS"].std(ddof=1)).to_numpy()
    cols = [np.ones(len(df))]
    for f in ("main_object", "second_object", "place", "style"):
        levels = sorted(df[f].unique())
        cols += [(df[f] == lv).astype(float).to_numpy() for lv in levels[1:]]
    X = np.column_stack(cols)
    beta, *_ = np.linalg.lstsq(X, z, rcond=None)
    fit = X @ beta
    dof = len(z) - X.shape[1]
    resid_var = float(((z - fit) ** 2).sum() / dof)
    content_var = max(1.0 - resid_var, 0.0)
    g = pd.Series(z).groupby(df["style"].to_numpy())
    diff = float(g.mean()[1] - g.mean()[0])
    se = float(math.sqrt(g.var(ddof=1)[1] / g.size()[1] + g.var(ddof=1)[0] / g.size()[0]))
    return {
        "n_images": int(len(z)), "n_factor_levels": int(X.shape[1]),
        "content_sd_z": math.sqrt(content_var), "residual_sd_z": math.sqrt(resid_var),
        "content_share": content_var,
        "realistic_minus_anime_z": diff, "realistic_minus_anime_ci": ci(diff, se),
    }


# ---------------------------------------------------------------------------
# Everything derived from data
# ---------------------------------------------------------------------------


def derive_all(data_dir: Path) -> dict:
    """All statistics from the data (no modelling choices)."""
    data_dir = Path(data_dir)
    a23 = load_aigciqa2023(data_dir)
    a3k = load_agiqa3k(data_dir)
    a1k = load_agiqa1k(data_dir)
    kw = load_bestprompts_keywords(data_dir)
    booster = bestprompts_booster_weights(kw)
    mods = agiqa3k_modifiers(a3k)
    return {
        "aigciqa2023": {
            "source": SOURCES["AIGCIQA2023"],
            "rows": "model == 'stable-diffusion', column quality_mos (0-100 MOS)",
            "variance": aigciqa_variance(a23),
            "best_of_k": aigciqa_best_of_k(a23),
            "complexity": aigciqa_complexity(a23),
            "by_style": aigciqa_category_means(a23, "style"),
            "by_class": aigciqa_category_means(a23, "class"),
            "other_models_icc": aigciqa_other_models_icc(a23),
        },
        "agiqa3k": {
            "source": SOURCES["AGIQA-3k"],
            "rows": "image names sd1.5_{normal,lowstep,lowcorr,highcorr}_NNN, column mos_quality; "
            "each setting's mean removed",
            "variance": agiqa3k_variance(a3k),
            "modifiers": mods,
            "aspects": agiqa3k_aspects(a3k, booster),
            "complexity_interactions": agiqa3k_interactions(a3k),
            "heterogeneity": agiqa3k_heterogeneity(a3k),
            "within_prompt_sd_by_n_modifiers": agiqa3k_within_sd_by_n_modifiers(a3k),
            "sensitivity": {
                "sd1.5_normal_only": {k: v["effect_z"] for k, v in
                                       agiqa3k_modifiers(a3k, settings=("normal",))["effects"].items()},
                "all_six_generators": {k: v["effect_z"] for k, v in agiqa3k_modifiers(a3k, model="all")["effects"].items()},
                "sd1.5_alignment_mos_align": {k: v["effect_z"] for k, v in
                                               agiqa3k_modifiers(a3k, col="mos_align")["effects"].items()},
            },
        },
        "agiqa1k": {"source": SOURCES["AGIQA-1k"], "rows": "deepai_* (Stable Diffusion 2.0), column MOS",
                    **agiqa1k_sd20(a1k)},
        "bestprompts": {"source": SOURCES["BestPrompts"], **booster},
    }


# ---------------------------------------------------------------------------
# The model (data + CHOICES)
# ---------------------------------------------------------------------------


def load_strategy_effects(path: Path = STRATEGY_EFFECTS) -> dict:
    """The numbers the ``ratings`` profile takes from ``scripts/derive_strategy_effects.py``'s output."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run scripts/derive_strategy_effects.py --out {path} first")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {
        "best_of_k_factor": float(doc["best_of_k_factor"]["pooled_normal_generators"]["value"]),
        "slope_z": float(doc["aspect_gains"]["pooled_any_modifier_slope"]["value"]),
        "prompt_sd_z": float(doc["per_prompt_effects"]["agiqa3k_per_modifier"]["sd_z"]["value"]),
    }


def build_model(derived: dict, profile: str = "classic", effects: dict | None = None,
                paper_category_share: float = PAPER_CATEGORY_SHARE) -> dict:
    """Map the derived statistics onto the simulator's model (see docs/quality_model.md).

    ``classic``: Table II cumulative, the SD rows' best-of-k factor, the slope signs of
    :data:`ASPECT_SLOPE_SIGNS`, no per-prompt strategy effects. ``ratings``: Table II as printed and
    ``effects`` (:func:`load_strategy_effects`): the normal generators' best-of-k factor, the pooled slope
    for every aspect, and per-prompt effects of every aspect (:data:`RATINGS_CONTENT_SHARE` of them from
    the prompt's words).
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    if profile == "paper":
        return calibrate_to_paper(build_model(derived, "ratings", effects), category_share=paper_category_share)
    ratings = profile == "ratings"
    if ratings and effects is None:
        effects = load_strategy_effects()
    var3k = derived["agiqa3k"]["variance"]
    bok = derived["aigciqa2023"]["best_of_k"]
    icc = var3k["icc"]  # prompt share of an SD image's quality variance (AGIQA-3k sd1.5)
    f = effects["best_of_k_factor"] if ratings else bok["normal_factor"]  # best-of-k gains / a normal's
    prompt_sd_z = math.sqrt(icc)
    seed_sd_z = f * math.sqrt(1.0 - icc)

    # raw-prompt complexity slope: inverse-variance pooled AIGCIQA2023 (SD) and AGIQA-3k (sd1.5)
    s1 = derived["aigciqa2023"]["complexity"]["stable_diffusion"]
    e2 = derived["agiqa3k"]["modifiers"]["effects"]["complexity"]
    se2 = (e2["ci"][1] - e2["ci"][0]) / (2 * Z95)
    w1, w2 = 1 / s1["se"] ** 2, 1 / se2**2
    b_c = (w1 * s1["slope_z"] + w2 * e2["effect_z"]) / (w1 + w2)

    # aspect gains are measured at the AGIQA-3k prompts' mean complexity
    c_data = derived["agiqa3k"]["modifiers"]["complexity_mean"]
    het = derived["agiqa3k"]["heterogeneity"]["sd_per_modifier_z"]
    # slope magnitude: an aspect whose gain varies linearly over c in [0, 1] with the measured
    # across-prompt SD of a modifier's effect (SD of a uniform c is 1/sqrt(12))
    slope_mag = het * math.sqrt(12.0)
    aspects = {}
    for a in ASPECTS:
        g = derived["agiqa3k"]["aspects"][a]["gain_z"]
        h = effects["slope_z"] if ratings else ASPECT_SLOPE_SIGNS[a] * slope_mag
        aspects[a] = {"gain_z_at_data_mean_c": g, "slope_z": h, "gain_z_at_c_ref": g + h * (C_REF - c_data)}
        if ratings:
            aspects[a].update(prompt_sd_z=effects["prompt_sd_z"], content_share=RATINGS_CONTENT_SHARE,
                              category_share=RATINGS_CATEGORY_SHARE)
    table = STRATEGY_TABLES["printed" if ratings else "cumulative"]
    strategies = []
    for s in range(N_STRATEGIES):
        used = [ASPECTS[a] for a in table[s]]
        strategies.append({
            "id": s, "name": STRATEGY_NAMES[s], "aspects": list(used),
            "offset_z": sum(aspects[a]["gain_z_at_c_ref"] for a in used),
            "slope_z": sum(aspects[a]["slope_z"] for a in used),
        })
    # the model holds the values as written to the YAML (4 significant digits)
    return {
        "profile": profile,
        "strategy_table": "printed" if ratings else "cumulative",
        "content_seed": RATINGS_CONTENT_SEED,
        "mapping": {"anchor": ANCHOR, "scale": SCALE, "c_ref": C_REF},
        "seed_sd_z": rnd(seed_sd_z),
        "prompt_sd_z": rnd(prompt_sd_z),
        "complexity_slope_z": rnd(b_c),
        "aspects": rnd(aspects),
        "strategies": [{**s, "offset_z": rnd(s["offset_z"]), "slope_z": rnd(s["slope_z"])} for s in strategies],
        "_slope_magnitude_z": slope_mag,
        "_c_data": c_data,
        "_best_of_k_factor": f,
    }


def paper_success(qm, texts: list[str]) -> dict[str, float]:
    """Single-image success over ``texts`` with a threshold uniform on [7.5, 8.5] (21 points): raw, always
    strategy 6, and the text-known optimum (per prompt and threshold the strategy with the highest
    :meth:`~sim.model.quality.QualityModel.text_known_success`); the prompt's own offset unknown."""
    tt = np.linspace(7.5, 8.5, 21)
    p = np.array([[qm.text_known_success(text, st, tt) for text in texts] for st in range(N_STRATEGIES)])
    return {"raw": float(p[0].mean()), "always_6": float(p[6].mean()), "optimum": float(p.max(axis=0).mean())}


def _shipped_prompts() -> list[str]:
    raw = yaml.safe_load((REPO_ROOT / "sim" / "data" / "prompts.yaml").read_text(encoding="utf-8"))
    return [p["text"] for p in raw["prompts"]]


def _scaled(model: dict, anchor: float, gain: float, tau: float, category_share: float) -> dict:
    """``model`` with ``anchor``, every aspect's gain times ``gain`` and per-prompt SD times ``tau``, all of it
    following the prompt's content (``category_share`` of that its category)."""
    out = {**model, "mapping": {**model["mapping"], "anchor": anchor}}
    out["aspects"] = {a: {**v, "gain_z_at_c_ref": v["gain_z_at_c_ref"] * gain,
                          "gain_z_at_data_mean_c": v["gain_z_at_data_mean_c"] * gain,
                          "prompt_sd_z": v.get("prompt_sd_z", 0.0) * tau,
                          "content_share": PAPER_CONTENT_SHARE, "category_share": category_share}
                      for a, v in model["aspects"].items()}
    table = STRATEGY_TABLES[model["strategy_table"]]
    out["strategies"] = [{**st, "offset_z": sum(out["aspects"][ASPECTS[a]]["gain_z_at_c_ref"] for a in table[st["id"]])}
                         for st in model["strategies"]]
    return out


def calibrate_to_paper(model: dict, texts: list[str] | None = None,
                       category_share: float = PAPER_CATEGORY_SHARE) -> dict:
    """The ``ratings`` ``model`` calibrated to :data:`PAPER_TARGETS` (:func:`paper_success`): the anchor from the
    raw prompts (root finding), then the gains' scale and the per-prompt SDs' scale together (least squares)."""
    from scipy.optimize import brentq, least_squares

    texts = _shipped_prompts() if texts is None else texts

    def success(anchor: float, gain: float, tau: float) -> dict[str, float]:
        return paper_success(model_from_dict(_scaled(model, anchor, gain, tau, category_share)), texts)

    anchor = brentq(lambda a: success(a, 1.0, 0.0)["raw"] - PAPER_TARGETS["raw"], 2.0, 9.0, xtol=1e-4)

    def misfit(v: np.ndarray) -> list[float]:
        got = success(anchor, float(v[0]), float(v[1]))
        return [got["always_6"] - PAPER_TARGETS["always_6"], got["optimum"] - PAPER_TARGETS["optimum"]]

    fit = least_squares(misfit, x0=[1.0, 2.0], bounds=([-40.0, 0.0], [40.0, 20.0]), xtol=1e-8, ftol=1e-10)
    gain, tau = (float(v) for v in fit.x)
    out = _scaled(model, anchor, gain, tau, category_share)
    achieved = success(anchor, gain, tau)
    out.update(profile="paper", calibration={
        "targets": {k: round(v, 4) for k, v in PAPER_TARGETS.items()},
        "achieved": {k: round(v, 4) for k, v in achieved.items()},
        "anchor": round(anchor, 4), "gain_scale": round(gain, 4), "prompt_sd_scale": round(tau, 4),
        "content_share": PAPER_CONTENT_SHARE, "category_share": category_share,
        "method": "scripts/derive_quality_stats.py calibrate_to_paper: paper_success over sim/data/prompts.yaml, "
                  "thresholds uniform on [7.5, 8.5], one image; the ratings model's anchor, aspect gains (x gain_scale) "
                  "and per-prompt SDs (x prompt_sd_scale) fitted to the three targets",
    })
    return out


def model_from_dict(model: dict):
    """A :class:`sim.model.quality.QualityModel` from :func:`build_model`'s output (no damage file), with the
    shipped prompt set's categories (as the world's backends give it)."""
    from sim.model.quality import DamageParams, QualityModel
    from sim.prompting.prompts import prompt_category

    aspects = model["aspects"]
    qm = QualityModel(
        anchor=model["mapping"]["anchor"], scale=model["mapping"]["scale"], c_ref=model["mapping"]["c_ref"],
        seed_sd_z=model["seed_sd_z"], prompt_sd_z=model["prompt_sd_z"],
        complexity_slope_z=model["complexity_slope_z"],
        offset_z=[s["offset_z"] for s in model["strategies"]], slope_z=[s["slope_z"] for s in model["strategies"]],
        strategy_names=tuple(s["name"] for s in model["strategies"]), damage=DamageParams(),
        aspect_offset_z=[aspects[a]["gain_z_at_c_ref"] for a in ASPECTS],
        aspect_slope_z=[aspects[a]["slope_z"] for a in ASPECTS],
        aspect_prompt_sd_z=[aspects[a].get("prompt_sd_z", 0.0) for a in ASPECTS],
        aspect_content_share=[aspects[a].get("content_share", 0.0) for a in ASPECTS],
        aspect_category_share=[aspects[a].get("category_share", 0.0) for a in ASPECTS],
        content_seed=model.get("content_seed", 0),
        strategy_table=model.get("strategy_table", "cumulative"),
    )
    qm.categorise = prompt_category
    return qm


def success_table(qm, complexities: np.ndarray, thresholds=(7.5, 8.0, 8.5), n_images=(1, 4)) -> dict:
    """P(best of n >= threshold) averaged over prompts (complexities) and their random effect.

    The prompt effect u ~ N(0, prompt_sd) is integrated by Gauss-Hermite quadrature.
    """
    x, w = np.polynomial.hermite_e.hermegauss(40)
    w = w / w.sum()
    u = qm.prompt_sd * x
    c = np.asarray(complexities, dtype=float)
    out: dict[str, Any] = {}
    for s in range(qm.n_strategies):
        for n in n_images:
            for t in thresholds:
                p = qm.prob_best_of_n_at_least(t, c[:, None], s, n, offset=u[None, :]) @ w
                out[f"s{s}_n{n}_t{t}"] = float(p.mean())
    # threshold uniform on [7.5, 8.5] (the paper's users)
    tt = np.linspace(7.5, 8.5, 21)
    for n in n_images:
        per_s = []
        for s in range(qm.n_strategies):
            p = qm.prob_best_of_n_at_least(tt[:, None, None], c[None, :, None], s, n, offset=u[None, None, :]) @ w
            per_s.append(p.mean(axis=0))  # per prompt, averaged over thresholds
        per_s = np.array(per_s)  # strategies x prompts
        out[f"uniform_n{n}"] = {
            "raw": float(per_s[0].mean()), "always_6": float(per_s[6].mean()),
            "best_per_prompt": float(per_s.max(axis=0).mean()),
            "best_strategy_share": {int(s): float(np.mean(per_s.argmax(axis=0) == s)) for s in range(qm.n_strategies)},
        }
    return out


def per_prompt_success(qm, texts: list[str], keys: range = range(16), n_images: int = 1) -> dict:
    """Single-round success with a threshold uniform on [7.5, 8.5] over ``texts``, when each prompt's own effect
    and its per-prompt strategy effects are drawn (``keys``: independent draws of the prompt's own parts; the
    content part is the model's): raw, always strategy 6, and the best strategy for each prompt and draw (the
    model optimum, which knows the effects)."""
    tt = np.linspace(7.5, 8.5, 21)
    c = np.array([prompt_complexity(t) for t in texts])
    per = np.zeros((qm.n_strategies, len(texts), len(keys)))
    for j, text in enumerate(texts):
        for k, key in enumerate(keys):
            offsets = np.array([qm.prompt_offset(text, key) + qm.scale * qm.strategy_effect_z(text, s, key)
                                for s in range(qm.n_strategies)])
            for s in range(qm.n_strategies):
                per[s, j, k] = qm.prob_best_of_n_at_least(tt, c[j], s, n_images, offset=offsets[s]).mean()
    best = per.max(axis=0)
    shares = np.bincount(per.argmax(axis=0).ravel(), minlength=qm.n_strategies) / best.size
    raw, six, opt = float(per[0].mean()), float(per[6].mean()), float(best.mean())
    return {"raw": raw, "always_6": six, "optimum": opt, "optimum_over_raw": opt / raw, "optimum_over_6": opt / six,
            "optimum_strategy_share": {int(s): float(x) for s, x in enumerate(shares)}}


def calibration_complexities() -> tuple[str, np.ndarray]:
    """Complexities of the shipped prompt set (sim/data/prompts.yaml) if readable, else a uniform grid."""
    path = REPO_ROOT / "sim" / "data" / "prompts.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        texts = [p["text"] for p in raw["prompts"]]
        return f"sim/data/prompts.yaml ({len(texts)} prompts)", np.array([prompt_complexity(t) for t in texts])
    except Exception:  # noqa: BLE001 - any problem: fall back to the grid
        return "uniform grid on [0, 1]", np.linspace(0.0, 1.0, 101)


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def _f(x: float, nd: int = 2) -> str:
    return f"{x:+.{nd}f}"


def _ci(c: list[float], nd: int = 2) -> str:
    return f"[{c[0]:+.{nd}f}, {c[1]:+.{nd}f}]"


def summary_text(derived: dict, model: dict, qm, calib: tuple[str, np.ndarray]) -> str:
    L: list[str] = []
    a23, a3k, a1k, bp = derived["aigciqa2023"], derived["agiqa3k"], derived["agiqa1k"], derived["bestprompts"]
    v = a23["variance"]
    L.append("== AIGCIQA2023, stable-diffusion, quality_mos (0-100) ==")
    L.append(f"  {v['n_prompts']} prompts x {v['seeds_per_prompt']} seeds; mean {v['mean']:.1f}, total SD {v['total_sd']:.2f}")
    L.append(f"  seed SD within prompt {v['seed_sd']:.2f}; SD of prompt means {v['sd_of_prompt_means']:.2f} "
             f"(pure seed noise would give {v['seed_sd'] / 2:.2f})")
    L.append(f"  F = {v['F']:.2f} (P(F <= obs | no prompt effect) = {v['p_F_below']:.1e}); ICC {v['icc']:+.2f} {_ci(v['icc_ci'])}; "
             f"prompt SD estimate {v['prompt_sd']:.2f}; within-prompt skewness {v['within_prompt_skewness']:+.2f}")
    L.append("  other models' ICC: " + ", ".join(f"{m} {o['icc']:.2f}" for m, o in a23["other_models_icc"].items()))
    b = a23["best_of_k"]
    L.append("  best-of-k gain over the prompt mean (seed-SD units, empirical [CI] vs normal):")
    for k, r in b["k"].items():
        L.append(f"    k={k}: {r['gain']:.2f} MOS = {r['gain_seed_sd']:.3f} {_ci(r['gain_seed_sd_ci'], 3)} vs {r['normal_gain_seed_sd']:.3f}")
    L.append(f"  empirical/normal factor f = {b['normal_factor']:.3f} {_ci(b['normal_factor_ci'], 3)}")
    for name, s in a23["complexity"].items():
        L.append(f"  complexity slope ({name}): {_f(s['slope_z'])} z per unit c {_ci(s['ci'])}, n = {s['n_prompts']} prompts")
    L.append("  by style (z): " + ", ".join(f"{k} {r['mean_z']:+.2f}" for k, r in a23["by_style"].items()))
    v3 = a3k["variance"]
    L.append("== AGIQA-3k, sd1.5 (4 settings), mos_quality ==")
    L.append(f"  {v3['n_prompts']} prompts; unit (SD after setting means) {v3['unit_mos']:.3f} MOS")
    L.append(f"  within-prompt SD {v3['within_prompt_sd_z']:.3f} z, prompt SD {v3['prompt_sd_z']:.3f} z, "
             f"ICC {v3['icc']:.3f} {_ci(v3['icc_ci'], 3)}")
    L.append("  modifier effects (z, 95% CI, prompts with it), complexity as covariate:")
    for name, e in a3k["modifiers"]["effects"].items():
        L.append(f"    {name:16s} {_f(e['effect_z'])} {_ci(e['ci'])}  n={e['n_prompts']}")
    L.append("  Table II aspects from the modifiers:")
    for name, e in a3k["aspects"].items():
        L.append(f"    {name:12s} {_f(e['gain_z'])} {_ci(e['ci'])}  from {e['from']}")
    L.append("  aspect x complexity interactions (z per unit c): " + "; ".join(
        f"{k} {_f(r['slope_z'])} {_ci(r['ci'])}" for k, r in a3k["complexity_interactions"].items()))
    h = a3k["heterogeneity"]
    L.append("  prompt variance (z^2) by number of modifiers: " + ", ".join(
        f"{k}: {r['prompt_var_z2']:.3f} (n={r['n_prompts']})" for k, r in h["by_n_modifiers"].items()))
    L.append(f"  => SD of a modifier's effect across prompts {h['sd_per_modifier_z']:.3f} z {_ci(h['sd_per_modifier_ci'], 3)}")
    L.append("== AGIQA-1k, Stable Diffusion 2.0 ==")
    L.append(f"  {a1k['n_images']} images; content (factor) SD {a1k['content_sd_z']:.2f} z, residual {a1k['residual_sd_z']:.2f} z; "
             f"realistic - anime {_f(a1k['realistic_minus_anime_z'])} {_ci(a1k['realistic_minus_anime_ci'])}")
    L.append("== BestPrompts keywords.csv ==")
    L.append(f"  booster weights {bp['weights']} ({bp['matched_share']:.0%} of keyword uses matched)")
    L.append("== Model ==")
    L.append(f"  anchor {ANCHOR} at c_ref {C_REF}, scale {SCALE} points/z; seed SD {qm.seed_sd:.3f} "
             f"({model['seed_sd_z']:.3f} z), prompt SD {qm.prompt_sd:.3f} ({model['prompt_sd_z']:.3f} z); "
             f"raw complexity slope {model['complexity_slope_z']:+.3f} z/c; aspect slope size {model['_slope_magnitude_z']:.3f} z/c")
    L.append("  mean score by strategy at c = 0 / 0.5 / 1:")
    for s in range(N_STRATEGIES):
        m = qm.mean_score(np.array([0.0, 0.5, 1.0]), s)
        L.append(f"    {s} {STRATEGY_NAMES[s]:17s} " + " / ".join(f"{x:.2f}" for x in m))
    label, cs = calib
    tab = success_table(qm, cs)
    L.append(f"  P(best of n >= t), averaged over {label} and the prompt effect:")
    for n in (1, 4):
        for t in (7.5, 8.0, 8.5):
            L.append(f"    n={n} t={t}: raw {tab[f's0_n{n}_t{t}']:.3f}  strategy 6 {tab[f's6_n{n}_t{t}']:.3f}  "
                     f"(all: " + " ".join(f"{tab[f's{s}_n{n}_t{t}']:.3f}" for s in range(N_STRATEGIES)) + ")")
        u = tab[f"uniform_n{n}"]
        L.append(f"    n={n}, t ~ U(7.5, 8.5): raw {u['raw']:.3f}, always-6 {u['always_6']:.3f}, "
                 f"best per prompt {u['best_per_prompt']:.3f} (x{u['best_per_prompt'] / u['raw']:.1f} raw, "
                 f"x{u['best_per_prompt'] / u['always_6']:.2f} always-6); best-strategy shares "
                 + ", ".join(f"{s}:{p:.2f}" for s, p in u["best_strategy_share"].items() if p > 0))
    if qm.aspect_prompt_sd_z.any():
        texts = [t for t in yaml.safe_load((REPO_ROOT / "sim" / "data" / "prompts.yaml").read_text())["prompts"]]
        pp = per_prompt_success(qm, [t["text"] for t in texts])
        L.append(f"  with the per-prompt effects (n=1, t ~ U(7.5, 8.5), 16 draws per prompt): raw {pp['raw']:.3f}, "
                 f"always-6 {pp['always_6']:.3f}, model optimum {pp['optimum']:.3f} (x{pp['optimum_over_raw']:.1f} raw, "
                 f"x{pp['optimum_over_6']:.2f} always-6); optimum's strategies "
                 + ", ".join(f"{s}: {v:.2f}" for s, v in pp["optimum_strategy_share"].items() if v))
    cal = model.get("calibration")
    if cal:
        L.append(f"  paper calibration (category share {cal['category_share']}): anchor {cal['anchor']}, gains x "
                 f"{cal['gain_scale']}, per-prompt SDs x {cal['prompt_sd_scale']}; achieved {cal['achieved']} "
                 f"for targets {cal['targets']}")
    L.append(f"  paper: raw {PAPER['raw_single_round_success']:.3f}, learned {PAPER['learned_single_round_success']:.3f}, "
             f"learned/always-6 {PAPER['learned_over_always_6']}")
    return "\n".join(L)


HEADER = """\
# Generation-quality model of the simulator (sim/model/quality.py): scores on the assessor's 0-10 scale.
# GENERATED by scripts/derive_quality_stats.py -- do not edit by hand. Regenerate with
#   python scripts/derive_quality_stats.py --data ../shared/data/aigc-quality --out sim/data/quality_generation.yaml
# Derived from human ratings of Stable Diffusion images (data files not copied, statistics only):
#   AIGCIQA2023  github wangjiarui153/AIGCIQA2023, AIGCIQA2023.csv from refs/pull/4/head @68283bb (no licence
#                file); *_with_model.csv joined with pic-index.xlsx row order
#   AGIQA-3k     github lcysyzxdxc/AGIQA-3k-Database @30ded2b (MIT)
#   AGIQA-1k     github lcysyzxdxc/AGIQA-1k-Database @7a8d9f2 (MIT)
#   BestPrompts  github Toloka/BestPrompts @5856311 (CC-BY data / Apache code), keywords.csv
# score = clip(mu(s, c) + u_p + eps, 0, 10), u_p ~ N(0, scale * prompt_sd_z), eps ~ N(0, scale * seed_sd_z),
# mu(s, c) = anchor + scale * (complexity_slope_z * (c - c_ref) + offset_z[s] + slope_z[s] * (c - c_ref)),
# c = sim.model.quality.prompt_complexity(prompt). z-unit = total SD of one SD image's quality rating.
# Which numbers are data and which are choices: docs/quality_model.md. `derived:` holds the raw
# statistics (effects in z-units, 95% CIs, n).
"""


def to_yaml(derived: dict, model: dict, qm, calib: tuple[str, np.ndarray]) -> str:
    label, cs = calib
    tab = success_table(qm, cs)
    doc = {
        "schema": 1,
        "generated_by": "scripts/derive_quality_stats.py",
        "profile": model["profile"],
        "strategy_table": model["strategy_table"],
        "complexity": {
            "function": "sim.model.quality.prompt_complexity",
            "definition": f"clip((content words - {COMPLEXITY_MIN_WORDS}) / ({COMPLEXITY_MAX_WORDS} - {COMPLEXITY_MIN_WORDS}), 0, 1)",
        },
        "mapping": {
            "anchor": rnd(model["mapping"]["anchor"]), "scale": model["mapping"]["scale"], "c_ref": model["mapping"]["c_ref"],
            "note": "score = anchor + scale * z; anchor = mean raw-prompt score of a typical prompt at c_ref "
                    "(choice), scale = points per z (choice)",
        },
        "seed_sd_z": rnd(model["seed_sd_z"]),
        "prompt_sd_z": rnd(model["prompt_sd_z"]),
        "seed_sd": rnd(SCALE * model["seed_sd_z"]),
        "prompt_sd": rnd(SCALE * model["prompt_sd_z"]),
        "complexity_slope_z": rnd(model["complexity_slope_z"]),
        **({"content_seed": model["content_seed"], "best_of_k_factor": rnd(model["_best_of_k_factor"])}
           if model["profile"] in ("ratings", "paper") else {}),
        **({"calibration": model["calibration"]} if model["profile"] == "paper" else {}),
        "aspects": {
            a: {**rnd(v), "evidence": _evidence(model["profile"], a)}
            for a, v in model["aspects"].items()
        },
        "strategies": [
            {"id": s["id"], "name": s["name"], "offset_z": rnd(s["offset_z"]), "slope_z": rnd(s["slope_z"]),
             "aspects": s["aspects"]}
            for s in model["strategies"]
        ],
        "summary": {
            "mean_score_at_c": {
                STRATEGY_NAMES[s]: rnd([float(x) for x in qm.mean_score(np.array([0.0, 0.5, 1.0]), s)], 3)
                for s in range(N_STRATEGIES)
            },
            "c_values": [0.0, 0.5, 1.0],
            "success_over": label,
            "p_success": rnd({k: v for k, v in tab.items() if not k.startswith("uniform")}, 3),
            "p_success_threshold_uniform_7.5_8.5": rnd({k: v for k, v in tab.items() if k.startswith("uniform")}, 3),
        },
        "derived": rnd(derived),
    }
    header = HEADER if model["profile"] == "classic" else HEADER.replace(
        "--out sim/data/quality_generation.yaml",
        f"--profile {model['profile']} --out {PROFILES[model['profile']]}") + (
        "# Profile paper: the ratings model CALIBRATED TO THE PAPER'S RESULTS (raw 3/55, always-6 9/55, IRL about\n"
        "# 19/55 single-image success at thresholds 7.5-8.5), not to human ratings: see calibration below.\n"
        if model["profile"] == "paper" else "") + (
        "# Table II as printed; each aspect's effect on a prompt varies, N(0, prompt_sd_z), a share content_share of\n"
        "# its variance from the prompt's content words (content_seed): QualityModel.aspect_effect_z.\n")
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110, default_flow_style=None)


_ASPECT_EVIDENCE = {
    "object": "gain: AGIQA-3k 'hyper detail' adjective (data); slope: -m, modelling choice (a complex prompt "
              "already describes its object), m from the measured heterogeneity of modifier effects",
    "environment": "gain: AGIQA-3k view adjectives long-shot / elevation view / top view (data); slope: -m as object",
    "mood": "gain: AGIQA-3k colour adjectives warm color / cold color (data); slope 0 (no evidence)",
    "lighting": "gain: AGIQA-3k lighting adjectives HDR lighting / soft lighting (data); slope 0 (no evidence)",
    "quality": "gain: AGIQA-3k hyper detail / HDR lighting / soft lighting / realistic style weighted by "
               "BestPrompts keyword usage (data); slope 0 (no evidence)",
    "negative": "gain: -0.5 x AGIQA-3k 'blurred detail' effect (weak evidence, choice of factor); slope 0",
}


_RATINGS_EVIDENCE = {
    a: text.split("; slope")[0] + "; slope: pooled AGIQA-3k modifier x complexity interaction (data, "
       "derive_strategy_effects); prompt_sd_z: across-prompt SD of a modifier's effect (AGIQA-3k, data); "
       f"content_share {RATINGS_CONTENT_SHARE}, category_share {RATINGS_CATEGORY_SHARE} (choices)"
    for a, text in _ASPECT_EVIDENCE.items()
}


def _evidence(profile: str, aspect: str) -> str:
    if profile == "classic":
        return _ASPECT_EVIDENCE[aspect]
    if profile == "ratings":
        return _RATINGS_EVIDENCE[aspect]
    return ("PAPER PROFILE (calibrated to the paper's results, not to ratings): the ratings model's gain x gain_scale, "
            "prompt_sd_z x prompt_sd_scale, content_share 1; see calibration")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="aigc-quality data directory (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"write the model YAML here (the shipped one is {DEFAULT_OUT.relative_to(REPO_ROOT)}); "
                         "without it, only print the summary")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="classic",
                    help="classic: Table II cumulative (sim/data/quality_generation.yaml); ratings: Table II as printed "
                         "with per-prompt strategy effects (sim/data/quality_generation_ratings.yaml; reads "
                         "sim/data/quality_strategy_effects.yaml)")
    ap.add_argument("--paper-category-share", type=float, default=PAPER_CATEGORY_SHARE,
                    help=f"with --profile paper: the share of the per-prompt effects' content part that follows the "
                         f"prompt's category (default {PAPER_CATEGORY_SHARE}; others show why it is 0)")
    args = ap.parse_args(argv)
    if not (args.data / "MANIFEST.txt").is_file():
        print(f"error: {args.data} is not the aigc-quality data directory (no MANIFEST.txt)", file=sys.stderr)
        return 2
    derived = derive_all(args.data)
    model = build_model(derived, args.profile, paper_category_share=args.paper_category_share)
    qm = model_from_dict(model)
    calib = calibration_complexities()
    print(summary_text(derived, model, qm, calib))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(to_yaml(derived, model, qm, calib), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
