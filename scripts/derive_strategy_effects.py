#!/usr/bin/env python
"""Derive what the rating data say about prompt-engineering strategy effects (the ``ratings`` quality profile uses them).

Usage::

    python scripts/derive_strategy_effects.py [--data DIR] [--out sim/data/quality_strategy_effects.yaml]

``--data`` defaults to ``../shared/data/aigc-quality`` relative to the repository root
(see its MANIFEST.txt); the data files are read, never copied. Without ``--out`` the
summary is printed and nothing is written. The loaders, the AGIQA-3k modifier
regression, the aspect mapping and the best-of-k estimator are those of
``scripts/derive_quality_stats.py`` (imported, not copied), so both files rest on the
same rows and choices.

What it computes (effects in z-units: the total SD of one Stable Diffusion image's
quality rating in that dataset; CIs are 95 %):

1. **Aspect gains and strategy means** under two readings of Table II: ``printed``
   (strategy 1 = object description, strategy s >= 2 = object description + aspect s)
   and ``cumulative`` (strategy s = aspects 1..s, the project's reading). Linear
   combinations of the AGIQA-3k modifier regression, CIs from its HC3 covariance; at
   the data's mean complexity and, with the data's complexity slopes, at the model's
   ``c_ref``.
2. **Per-prompt strategy effects**: the SD across prompts of a modifier's effect
   (AGIQA-3k, as in ``derive_quality_stats.agiqa3k_heterogeneity``); the style x main
   object interaction of AGIQA-1k (SD of the realistic-minus-anime effect across main
   objects, F-test and permutation p-values, two-way bootstrap CI) and how much of it the
   object's class explains; the generator x prompt interaction of AIGCIQA2023's four
   normal generators and how much of it the prompt's ``class`` / ``style`` explain.
3. **Complexity slopes per aspect** with the data's signs (modifier x complexity
   interactions in one joint regression, combined like the gains).
4. **Best-of-k factor f** for AIGCIQA2023's four normal generators (Controlnet, DALLE,
   Glide, Lafite), per generator and pooled, beside the Stable Diffusion rows.
5. **Assessor noise**: AGIQA-3k per-image rater SD (``std_quality``) in z and in 0-10
   points, one rater and the 21-rater panel mean.
6. **Implied gain** of the best per-prompt strategy over always-strategy-6 (success at
   thresholds 7.5 / 8.0 / 8.5 / uniform on [7.5, 8.5], one image, and mean score) by a
   fixed-seed Monte Carlo over the shipped prompt set, printed vs cumulative, with and
   without per-prompt effects and assessor noise.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats

SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
for _p in (str(REPO_ROOT), str(SCRIPTS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import derive_quality_stats as dqs  # noqa: E402
from sim.model.quality import SCORE_MAX, SCORE_MIN, STRATEGY_TABLES, expected_max_normal, prob_max_at_least  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "sim" / "data" / "quality_strategy_effects.yaml"
COMMAND = ("python scripts/derive_strategy_effects.py --data ../shared/data/aigc-quality "
           "--out sim/data/quality_strategy_effects.yaml")
Z95 = dqs.Z95
N_BOOT = dqs.N_BOOT
SEED = dqs.BOOTSTRAP_SEED + 100

#: AIGCIQA2023 generators whose prompt/seed structure is normal (docs/quality_model.md, 3.1).
NORMAL_GENERATORS = ("Controlnet", "DALLE", "Glide", "Lafite")

#: AGIQA-1k main objects (README order: 0 bird ... 11 witch) and the classes they fall in.
AGIQA1K_OBJECTS = ("bird", "cat", "dog", "batman", "snoopy", "teddy bear", "kid", "man", "woman",
                   "alien", "demon", "witch")
AGIQA1K_OBJECT_CLASS = {0: "animal", 1: "animal", 2: "animal", 3: "character", 4: "character", 5: "character",
                        6: "human", 7: "human", 8: "human", 9: "fantasy", 10: "fantasy", 11: "fantasy"}

#: Raters per image in AGIQA-3k: 21 (AGIQA-3K paper, arXiv 2306.04717, subjective experiment).
AGIQA3K_RATERS = 21

# ---------------------------------------------------------------------------
# CHOICES for the implied-gain simulation (6); see docs/quality_model.md, section 7.
# ---------------------------------------------------------------------------

#: Thresholds of the single-image success rate.
SIM_THRESHOLDS = (7.5, 8.0, 8.5)
#: Monte Carlo replicates of (prompt effect, per-prompt aspect effects) per shipped prompt.
SIM_REPLICATES = 400
SIM_SEED = 20240611
#: Draws of the aspect gains (and replicates per prompt in each) for the ratios' uncertainty intervals.
SIM_PARAM_DRAWS = 200
SIM_PARAM_REPLICATES = 25
#: Assessor-noise default (choice): one human rater's disagreement with the panel (AGIQA-3k), i.e. a
#: judge as reliable as one typical rater; the 21-rater panel noise is the lower bound.
ASSESSOR_NOISE_DEFAULT = "one_rater"


# ---------------------------------------------------------------------------
# Small statistics helpers
# ---------------------------------------------------------------------------


def lincomb(v: np.ndarray, beta: np.ndarray, cov: np.ndarray) -> dict:
    """Estimate, SE and normal 95 % CI of ``v @ beta`` given the covariance of ``beta``."""
    est = float(v @ beta)
    se = float(math.sqrt(max(v @ cov @ v, 0.0)))
    return {"value": est, "se": se, "ci": dqs.ci(est, se)}


def pct_ci(samples: np.ndarray) -> list[float]:
    """Percentile 95 % interval of bootstrap samples (NaNs dropped)."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    return [float(q) for q in np.percentile(s, [2.5, 97.5])]


def jackknife_ci(fn, n: int, lo: float = -math.inf, hi: float = math.inf) -> list[float]:
    """Delete-one jackknife normal 95 % CI of ``fn(keep)`` over ``n`` units (``keep``: indices kept).

    Used for variance shares, where resampling with replacement biases the estimate upward
    (a duplicated unit looks like between-category signal). Clipped to ``[lo, hi]``.
    """
    full = fn(np.arange(n))
    loo = np.array([fn(np.delete(np.arange(n), i)) for i in range(n)], dtype=float)
    loo = loo[np.isfinite(loo)]
    m = len(loo)
    se = math.sqrt((m - 1) / m * float(((loo - loo.mean()) ** 2).sum())) if m > 1 else float("nan")
    return [float(np.clip(full - Z95 * se, lo, hi)), float(np.clip(full + Z95 * se, lo, hi))]


def two_way_anova(table: np.ndarray) -> dict:
    """Two-way ANOVA without replication of a rows x cols table (rows + cols additive).

    Returns the sums of squares and degrees of freedom of rows, cols and residual.
    """
    y = np.asarray(table, dtype=float)
    r, c = y.shape
    grand = y.mean()
    row = y.mean(axis=1)
    col = y.mean(axis=0)
    res = y - row[:, None] - col[None, :] + grand
    return {
        "ss_row": float(c * ((row - grand) ** 2).sum()), "df_row": r - 1,
        "ss_col": float(r * ((col - grand) ** 2).sum()), "df_col": c - 1,
        "ss_res": float((res**2).sum()), "df_res": (r - 1) * (c - 1),
        "n_cols": c, "row_means": row,
    }


def row_effect_sd(table: np.ndarray) -> dict:
    """SD across rows of the true row effects of a rows x cols table (rows random, cols = blocks).

    Method of moments: ``tau^2 = (MS_row - MS_res) / n_cols``; F = MS_row / MS_res with its
    upper-tail p-value. Each row's effect is the mean of its ``n_cols`` cells; the
    block (column) effects are removed.
    """
    a = two_way_anova(table)
    ms_row = a["ss_row"] / a["df_row"]
    ms_res = a["ss_res"] / a["df_res"]
    tau2 = (ms_row - ms_res) / a["n_cols"]
    f_obs = ms_row / ms_res
    return {"tau2": float(tau2), "sd": math.sqrt(max(tau2, 0.0)), "F": float(f_obs),
            "df": [a["df_row"], a["df_res"]], "p": float(stats.f.sf(f_obs, a["df_row"], a["df_res"])),
            "ms_res": ms_res, "anova": a}


def category_share(table: np.ndarray, categories: np.ndarray) -> dict:
    """Share of the true between-row variation of a rows x cols table explained by a row category.

    With row means ``m_j`` (noise variance MS_res / n_cols each) and category means of the
    row means, the share is ``(SS_cat - (C-1) MS_res) / (SS_row - (R-1) MS_res)`` (the
    finite-population sums of squares net of noise), clipped to [0, 1]. Also the F-test of
    the category against the rows within categories (is the category more than a
    relabelling of rows?).
    """
    a = two_way_anova(table)
    cats = np.asarray(categories)
    m = a["row_means"]
    n = a["n_cols"]
    grand = m.mean()
    levels = np.unique(cats)
    ss_cat = float(sum(n * (cats == lv).sum() * (m[cats == lv].mean() - grand) ** 2 for lv in levels))
    df_cat = len(levels) - 1
    ms_res = a["ss_res"] / a["df_res"]
    ss_within = a["ss_row"] - ss_cat
    df_within = a["df_row"] - df_cat
    num = ss_cat - df_cat * ms_res
    den = a["ss_row"] - a["df_row"] * ms_res
    share = float(np.clip(num / den, 0.0, 1.0)) if den > 0 else float("nan")
    f_cat = (ss_cat / df_cat) / (ss_within / df_within) if df_within > 0 and ss_within > 0 else float("nan")
    return {"share": share, "F_vs_rows_within": float(f_cat), "df": [df_cat, df_within],
            "p": float(stats.f.sf(f_cat, df_cat, df_within)) if math.isfinite(f_cat) else float("nan")}


def permutation_p_rows(table: np.ndarray, n_perm: int, rng: np.random.Generator) -> float:
    """Permutation p-value of the row effect of a rows x cols table: rows shuffled within each column.

    Statistic: the SS of the row means. Shuffling within a column keeps the column (block)
    structure; under no row effect every arrangement is equally likely.
    """
    y = np.asarray(table, dtype=float)
    r, c = y.shape
    obs = y.mean(axis=1).var()
    perm = np.argsort(rng.random((n_perm, r, c)), axis=1)
    shuffled = np.take_along_axis(np.broadcast_to(y, (n_perm, r, c)), perm, axis=1)
    stat = shuffled.mean(axis=2).var(axis=1)
    return float((1 + np.sum(stat >= obs - 1e-12)) / (n_perm + 1))


def replicated_interaction(cube: np.ndarray) -> dict:
    """Units x treatments x replicates cube: SD of the unit x treatment interaction (per treatment).

    Model ``y_utk = mu + a_u + b_t + d_ut + e_utk`` with ``d_ut ~ N(0, tau^2)`` independent per
    treatment and ``e`` the replicate noise. The double-centred cell means give
    ``E[MS_int] = tau^2 + sigma^2 / K``, so ``tau^2 = MS_int - MS_within / K``; F = MS_int /
    (MS_within / K). ``tau`` is the SD of one treatment's effect across units (the SD of a
    contrast between two treatments is ``sqrt(2) tau``).
    """
    y = np.asarray(cube, dtype=float)
    u, t, k = y.shape
    cells = y.mean(axis=2)
    within = float(y.var(axis=2, ddof=1).mean())
    res = cells - cells.mean(axis=1, keepdims=True) - cells.mean(axis=0, keepdims=True) + cells.mean()
    df_int = (u - 1) * (t - 1)
    ms_int = float((res**2).sum() / df_int)
    tau2 = ms_int - within / k
    f_obs = ms_int / (within / k)
    df_w = u * t * (k - 1)
    return {"tau2": tau2, "sd": math.sqrt(max(tau2, 0.0)), "F": f_obs, "df": [df_int, df_w],
            "p": float(stats.f.sf(f_obs, df_int, df_w)), "noise_var_cell": within / k, "residuals": res}


def interaction_category_share(res: np.ndarray, noise_var_cell: float, categories: np.ndarray) -> float:
    """Share of the unit x treatment interaction (net of noise) explained by a unit category.

    ``res``: the double-centred cell means (units x treatments). The category x treatment
    part is the category means of ``res``; its SS less its expected noise
    ``(C-1)(T-1) noise`` over the interaction SS less ``(U-1)(T-1) noise``, clipped to [0, 1].
    """
    cats = np.asarray(categories)
    u, t = res.shape
    levels = np.unique(cats)
    ss_cat = 0.0
    for lv in levels:
        sel = cats == lv
        ss_cat += sel.sum() * float((res[sel].mean(axis=0) ** 2).sum())
    num = ss_cat - (len(levels) - 1) * (t - 1) * noise_var_cell
    den = float((res**2).sum()) - (u - 1) * (t - 1) * noise_var_cell
    return float(np.clip(num / den, 0.0, 1.0)) if den > 0 else float("nan")


# ---------------------------------------------------------------------------
# 1 + 3. Aspect gains, strategy means, complexity slopes (AGIQA-3k sd1.5)
# ---------------------------------------------------------------------------

ASPECTS = dqs.ASPECTS
STRATEGY_NAMES = dqs.STRATEGY_NAMES


def aspect_weights(booster: dict) -> dict[str, dict[str, float]]:
    """Modifier weights of each Table II aspect (normalised to sum 1; negative = NEGATIVE_FROM_BLUR x blur).

    The same mapping as ``derive_quality_stats.agiqa3k_aspects`` (docs 4.3).
    """
    out: dict[str, dict[str, float]] = {}
    for aspect, weights in dqs.ASPECT_MODIFIERS.items():
        total = sum(weights.values())
        out[aspect] = {m: w / total for m, w in weights.items()}
    bw = {m: float(c) for m, c in booster["weights"].items()}
    total = sum(bw.values())
    out["quality"] = {m: w / total for m, w in bw.items()}
    out["negative"] = {"blurred detail": dqs.NEGATIVE_FROM_BLUR}
    return {a: out[a] for a in ASPECTS}


def aspect_vector(weights: dict[str, float], names: list[str], offset: int = 0, size: int | None = None) -> np.ndarray:
    """Coefficient vector for a weighted sum of modifiers; ``offset`` shifts into a block of a wider design."""
    v = np.zeros(size if size is not None else len(names))
    for m, w in weights.items():
        v[offset + names.index(m)] = w
    return v


def strategy_aspects(strategy: int, reading: str) -> tuple[str, ...]:
    """Aspects a strategy uses under a reading of Table II (:data:`sim.model.quality.STRATEGY_TABLES`)."""
    if reading not in STRATEGY_TABLES:
        raise ValueError(f"unknown reading {reading!r}: use 'printed' or 'cumulative'")
    return tuple(ASPECTS[a] for a in STRATEGY_TABLES[reading][strategy])


def interaction_design(pm: pd.DataFrame, c0: float) -> tuple[np.ndarray, list[str], int]:
    """The modifier design of derive_quality_stats with complexity centred at ``c0`` plus modifier x (c - c0).

    Returns the design, the names of the main block, and the offset of the interaction block.
    """
    X, names = dqs._modifier_design(pm)
    c = (pm["complexity"] - c0).to_numpy()
    X = X.copy()
    X[:, names.index("complexity")] = c
    mods = [n for n in names if n not in ("const", "complexity")]
    inter = np.column_stack([X[:, names.index(m)] * c for m in mods])
    return np.column_stack([X, inter]), names, len(names) - 2  # interaction of names[i] at len(names) + i - 2


def aspects_and_strategies(a3k: pd.DataFrame, booster: dict, c_ref: float = dqs.C_REF) -> dict:
    """Aspect gains, complexity slopes and strategy means (both readings), with CIs.

    ``at_data_mean_c``: the additive modifier regression of derive_quality_stats (gains at the
    AGIQA-3k mean complexity, where they are measured). ``slopes`` and ``at_c_ref``: one joint
    regression with every modifier x (c - c0) interaction, the aspect slope being the aspect's
    weights applied to the interaction block; ``c0 = c_ref`` gives the gains there.
    """
    _, _, pm = dqs.agiqa3k_sd(a3k)
    y = pm["z"].to_numpy()
    beta, cov, names = dqs.modifier_regression(pm)
    weights = aspect_weights(booster)
    c_data = float(pm["complexity"].mean())
    # cross-check the mapping against derive_quality_stats
    ref = dqs.agiqa3k_aspects(a3k, booster)
    vecs = {a: aspect_vector(weights[a], names) for a in ASPECTS}
    for a in ASPECTS:
        if abs(float(vecs[a] @ beta) - ref[a]["gain_z"]) > 1e-9:
            raise RuntimeError(f"aspect mapping of {a} disagrees with derive_quality_stats.agiqa3k_aspects")

    def joint(c0: float) -> tuple[np.ndarray, np.ndarray, list[str], int]:
        X, nm, _ = interaction_design(pm, c0)
        b, cv = dqs.ols_hc3(X, y)
        return b, cv, nm, len(nm)

    out: dict[str, Any] = {"c_data": c_data, "c_ref": c_ref, "aspects": {}, "strategies": {}}
    bj_data, cj_data, nm, off = joint(c_data)
    bj_ref, cj_ref, _, _ = joint(c_ref)
    size = len(bj_data)
    mods = [n for n in nm if n not in ("const", "complexity")]
    slope_vecs = {}
    main_ref_vecs = {}
    for a in ASPECTS:
        sv = np.zeros(size)
        mv = np.zeros(size)
        for m, w in weights[a].items():
            sv[off + mods.index(m)] = w
            mv[nm.index(m)] = w
        slope_vecs[a] = sv
        main_ref_vecs[a] = mv
        out["aspects"][a] = {
            "modifiers": dict(weights[a]),
            "gain_at_data_mean_c": lincomb(vecs[a], beta, cov),
            "slope_per_unit_c": lincomb(sv, bj_data, cj_data),
            "gain_at_c_ref_data_slopes": lincomb(mv, bj_ref, cj_ref),
            "current_choice_slope_z": None,  # filled by the caller from the shipped model
        }
    for reading in ("printed", "cumulative"):
        rows = []
        for s in range(len(STRATEGY_NAMES)):
            used = strategy_aspects(s, reading)
            v = sum((vecs[a] for a in used), np.zeros(len(names)))
            sv = sum((slope_vecs[a] for a in used), np.zeros(size))
            mv = sum((main_ref_vecs[a] for a in used), np.zeros(size))
            rows.append({"id": s, "aspects": list(used),
                         "mean_at_data_mean_c": lincomb(v, beta, cov),
                         "slope_per_unit_c": lincomb(sv, bj_data, cj_data),
                         "mean_at_c_ref_data_slopes": lincomb(mv, bj_ref, cj_ref)})
        out["strategies"][reading] = rows
    V = np.array([vecs[a] for a in ASPECTS])
    out["gain_cov"] = (V @ cov @ V.T).tolist()  # aspects x aspects, additive regression
    # the pooled per-modifier slope of derive_quality_stats for comparison
    inter = dqs.agiqa3k_interactions(a3k)
    out["pooled_any_modifier_slope"] = inter["any modifier (per modifier)"]
    out["n_prompts"] = int(len(pm))
    out["n_interaction_params"] = len(mods)
    return out


# ---------------------------------------------------------------------------
# 2. Per-prompt strategy effects
# ---------------------------------------------------------------------------


def agiqa1k_style_table(a1k: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """12 main objects x 30 (second object, place) blocks of realistic-minus-anime differences (z).

    z is the SD 2.0 MOS standardised over the 720 ``deepai`` images (as in derive_quality_stats).
    Returns the table and the main-object ids of its rows.
    """
    d = a1k.copy()
    d["z"] = (d["MOS"] - d["MOS"].mean()) / d["MOS"].std(ddof=1)
    wide = d.pivot_table(index=["main_object", "second_object", "place"], columns="style", values="z")
    if wide.isna().any().any() or len(wide) != 360:
        raise ValueError("AGIQA-1k: expected a full 12 x 15 x 2 x 2 factorial of deepai images")
    diff = (wide[1] - wide[0]).rename("d").reset_index()
    diff["block"] = diff["second_object"] * 2 + diff["place"]
    table = diff.pivot(index="main_object", columns="block", values="d")
    return table.to_numpy(), table.index.to_numpy()


def agiqa1k_style_by_object(a1k: pd.DataFrame, n_boot: int = N_BOOT, seed: int = SEED) -> dict:
    """Realistic-minus-anime effect by main object (AGIQA-1k, SD 2.0): its SD, tests, class share.

    Rows are main objects, columns the 30 (second object, place) blocks; a cell is the paired
    difference realistic - anime. Bootstrap (SD, mean): main objects resampled within their class,
    and the blocks resampled, independently (two-way), ``n_boot`` times; the class share's CI is a
    delete-one-object jackknife.
    """
    table, objs = agiqa1k_style_table(a1k)
    classes = np.array([AGIQA1K_OBJECT_CLASS[int(o)] for o in objs])
    het = row_effect_sd(table)
    share = category_share(table, classes)
    rng = np.random.default_rng(seed)
    perm_p = permutation_p_rows(table, n_boot, rng)
    # the other content factors: does the effect vary with the second object (activity) or the place?
    second = table.reshape(12, 15, 2)
    f_second = row_effect_sd(second.mean(axis=2).T)  # 15 activities x 12 objects
    f_place = row_effect_sd(second.mean(axis=1).T)  # 2 places x 12 objects
    by_class = {str(lv): float(table[classes == lv].mean()) for lv in np.unique(classes)}
    # two-way bootstrap
    idx_by_class = {lv: np.flatnonzero(classes == lv) for lv in np.unique(classes)}
    boot_sd, boot_mean = [], []
    for _ in range(n_boot):
        rows = np.concatenate([rng.choice(ix, size=len(ix), replace=True) for ix in idx_by_class.values()])
        cols = rng.integers(0, table.shape[1], size=table.shape[1])
        t = table[np.ix_(rows, cols)]
        boot_sd.append(row_effect_sd(t)["sd"])
        boot_mean.append(t.mean())
    share_ci = jackknife_ci(lambda keep: category_share(table[keep], classes[keep])["share"], len(objs), 0.0, 1.0)
    mean = float(table.mean())
    se_mean = float(table.std(ddof=1) / math.sqrt(table.size))
    return {
        "n_images": int(2 * table.size), "n_main_objects": int(table.shape[0]), "n_blocks": int(table.shape[1]),
        "realistic_minus_anime_z": mean, "realistic_minus_anime_ci": dqs.ci(mean, se_mean),
        "by_main_object": {AGIQA1K_OBJECTS[int(o)]: float(v) for o, v in zip(objs, table.mean(axis=1))},
        "by_class": by_class,
        "sd_across_main_objects_z": het["sd"], "sd_across_main_objects_ci": pct_ci(boot_sd),
        "per_modifier_sd_z": het["sd"] / math.sqrt(2.0),
        "per_modifier_sd_ci": [x / math.sqrt(2.0) for x in pct_ci(boot_sd)],
        "F": het["F"], "F_df": het["df"], "p_F": het["p"], "p_permutation": perm_p, "n_permutations": n_boot,
        "class_share": share["share"], "class_share_ci": share_ci,
        "class_F_vs_objects_within_class": share["F_vs_rows_within"], "class_F_df": share["df"], "class_p": share["p"],
        "second_object": {"sd_z": f_second["sd"], "F": f_second["F"], "F_df": f_second["df"], "p_F": f_second["p"]},
        "place": {"sd_z": f_place["sd"], "F": f_place["F"], "F_df": f_place["df"], "p_F": f_place["p"]},
        "bootstrap_mean_ci": pct_ci(boot_mean),
    }


def aigciqa_generator_by_prompt(a23: pd.DataFrame, generators: tuple[str, ...] = NORMAL_GENERATORS,
                                n_boot: int = N_BOOT, seed: int = SEED + 1) -> dict:
    """Generator x prompt interaction of AIGCIQA2023 (quality_mos, z within generator, 4 seeds per cell).

    The generator is the only treatment this dataset varies; its interaction with the prompt is
    the analogue of a per-prompt strategy effect. Also how much of it, and of the prompt main
    effect, the prompt's ``class`` and ``style`` columns explain. SD: bootstrap over prompts;
    shares: delete-one-prompt jackknife.
    """
    d = a23[a23["model"].isin(generators)].copy()
    d["z"] = d.groupby("model")["quality_mos"].transform(lambda x: (x - x.mean()) / x.std(ddof=1))
    d = d.sort_values(["prompt_idx", "model", "seed_idx"])
    prompts = np.sort(d["prompt_idx"].unique())
    cube = d["z"].to_numpy().reshape(len(prompts), len(generators), -1)
    meta = d.groupby("prompt_idx")[["class", "style"]].first().loc[prompts]
    inter = replicated_interaction(cube)
    shares = {col: interaction_category_share(inter["residuals"], inter["noise_var_cell"], meta[col].to_numpy())
              for col in ("class", "style")}
    # prompt main effect (prompt means over generators and seeds) explained by class / style
    pm_table = cube.reshape(len(prompts), -1)  # prompts x (generator, seed): rows + blocks
    main_share = {col: category_share(pm_table, meta[col].to_numpy()) for col in ("class", "style")}
    rng = np.random.default_rng(seed)
    boot_sd = [replicated_interaction(cube[rng.integers(0, len(prompts), size=len(prompts))])["sd"]
               for _ in range(n_boot)]

    def inter_share(col: str):
        def fn(keep: np.ndarray) -> float:
            r = replicated_interaction(cube[keep])
            return interaction_category_share(r["residuals"], r["noise_var_cell"], meta[col].to_numpy()[keep])
        return fn

    def main_share_fn(col: str):
        return lambda keep: category_share(pm_table[keep], meta[col].to_numpy()[keep])["share"]

    jk = {col: jackknife_ci(inter_share(col), len(prompts), 0.0, 1.0) for col in ("class", "style")}
    jk_main = {col: jackknife_ci(main_share_fn(col), len(prompts), 0.0, 1.0) for col in ("class", "style")}
    return {
        "generators": list(generators), "n_prompts": int(len(prompts)), "seeds_per_cell": int(cube.shape[2]),
        "per_generator_sd_z": inter["sd"], "per_generator_sd_ci": pct_ci(boot_sd),
        "F": inter["F"], "F_df": inter["df"], "p_F": inter["p"],
        "interaction_share_class": shares["class"], "interaction_share_class_ci": jk["class"],
        "interaction_share_style": shares["style"], "interaction_share_style_ci": jk["style"],
        "prompt_effect_share_class": main_share["class"]["share"],
        "prompt_effect_share_class_ci": jk_main["class"],
        "prompt_effect_class_p": main_share["class"]["p"],
        "prompt_effect_share_style": main_share["style"]["share"],
        "prompt_effect_share_style_ci": jk_main["style"],
        "prompt_effect_style_p": main_share["style"]["p"],
    }


# ---------------------------------------------------------------------------
# 4. Best of k (AIGCIQA2023)
# ---------------------------------------------------------------------------


def best_of_k_pooled(a23: pd.DataFrame, generators: tuple[str, ...] = NORMAL_GENERATORS,
                     n_boot: int = N_BOOT, seed: int = SEED + 2) -> dict:
    """Best-of-k factor f of several generators pooled (each in its own seed-SD units), bootstrap over prompts.

    Per generator the gain of the best of k of a prompt's 4 seeds over the prompt mean is
    ``best_of_k_subsets`` (derive_quality_stats); the pooled curve is the mean over generators of
    gain / seed SD, and f its least-squares ratio to the normal's expected maximum over k = 2..4.
    The prompts are shared by the generators, so one resample of prompts serves all of them.
    """
    per_gen_gains = []
    per_gen_var = []
    for g in generators:
        wide = a23[a23["model"] == g].pivot(index="prompt_idx", columns="seed_idx", values="quality_mos")
        wide = wide.sort_index().to_numpy()
        means = wide.mean(axis=1)
        per_gen_gains.append(np.column_stack([dqs.best_of_k_subsets(wide, k) - means for k in range(1, wide.shape[1] + 1)]))
        per_gen_var.append(wide.var(axis=1, ddof=1))
    gains = np.array(per_gen_gains)  # G x P x m
    var_w = np.array(per_gen_var)  # G x P
    m = gains.shape[2]
    ek = expected_max_normal(0.0, 1.0, np.arange(1, m + 1))[1:]

    def f_of(ix: np.ndarray) -> tuple[float, np.ndarray]:
        ratio = gains[:, ix].mean(axis=1) / np.sqrt(var_w[:, ix].mean(axis=1))[:, None]  # G x m
        curve = ratio.mean(axis=0)
        return float(curve[1:] @ ek / (ek @ ek)), curve

    p = gains.shape[1]
    f_hat, curve = f_of(np.arange(p))
    rng = np.random.default_rng(seed)
    boot = np.array([f_of(rng.integers(0, p, size=p))[0] for _ in range(n_boot)])
    return {"generators": list(generators), "f": f_hat, "f_ci": pct_ci(boot),
            "gain_seed_sd_by_k": {k + 1: float(curve[k]) for k in range(m)},
            "normal_gain_seed_sd_by_k": {k + 1: float(v) for k, v in enumerate(np.r_[0.0, ek])}}


def best_of_k_all(a23: pd.DataFrame) -> dict:
    """f per normal generator and for the Stable Diffusion rows (derive_quality_stats.aigciqa_best_of_k), and pooled."""
    per = {}
    for g in (*NORMAL_GENERATORS, "stable-diffusion"):
        b = dqs.aigciqa_best_of_k(a23, g)
        per[g] = {"f": b["normal_factor"], "f_ci": b["normal_factor_ci"],
                  "gain_seed_sd_k4": b["k"][4]["gain_seed_sd"], "gain_seed_sd_k4_ci": b["k"][4]["gain_seed_sd_ci"]}
    return {"per_generator": per, "pooled_normal": best_of_k_pooled(a23)}


# ---------------------------------------------------------------------------
# 5. Assessor noise (AGIQA-3k rater disagreement)
# ---------------------------------------------------------------------------


def assessor_noise(a3k: pd.DataFrame, scale: float = dqs.SCALE, n_boot: int = N_BOOT, seed: int = SEED + 3) -> dict:
    """Per-image rater SD of AGIQA-3k sd1.5 ``std_quality`` in the z-unit of derive_quality_stats.

    One rater: the root-mean-square of ``std_quality`` over the 1200 sd1.5 images, over the
    unit (SD of ``mos_quality`` after removing setting means). Panel: that over
    sqrt(AGIQA3K_RATERS). CI by bootstrapping images. In 0-10 points: times ``scale``.
    """
    d, unit, _ = dqs.agiqa3k_sd(a3k)
    s2 = d["std_quality"].to_numpy() ** 2
    one = math.sqrt(s2.mean()) / unit
    rng = np.random.default_rng(seed)
    boot = np.sqrt(s2[rng.integers(0, len(s2), size=(n_boot, len(s2)))].mean(axis=1)) / unit
    one_ci = pct_ci(boot)
    panel = one / math.sqrt(AGIQA3K_RATERS)
    all_models = a3k.assign(z=a3k["std_quality"] / a3k["mos_quality"].std(ddof=1))
    return {
        "n_images": int(len(s2)), "unit_mos": unit, "raters_per_image": AGIQA3K_RATERS,
        "one_rater_sd_z": one, "one_rater_sd_ci": one_ci,
        "one_rater_sd_points": one * scale, "one_rater_sd_points_ci": [x * scale for x in one_ci],
        "panel_mean_sd_z": panel, "panel_mean_sd_ci": [x / math.sqrt(AGIQA3K_RATERS) for x in one_ci],
        "panel_mean_sd_points": panel * scale,
        "one_rater_reliability": 1.0 / (1.0 + one**2),
        "all_six_generators_one_rater_sd_over_total_mos_sd": float(math.sqrt((all_models["z"] ** 2).mean())),
        "std_vs_mos_correlation": float(np.corrcoef(d["std_quality"], d["mos_quality"])[0, 1]),
    }


# ---------------------------------------------------------------------------
# 6. Implied gain of the best per-prompt strategy over always-6 (Monte Carlo)
# ---------------------------------------------------------------------------


def implied_gain(complexities: np.ndarray, gains: dict[str, float], slopes: dict[str, float], *, reading: str,
                 tau: float, noise_z: float, c_data: float, anchor: float = dqs.ANCHOR, scale: float = dqs.SCALE,
                 c_ref: float = dqs.C_REF, seed_sd_z: float, prompt_sd_z: float, complexity_slope_z: float,
                 n_rep: int = SIM_REPLICATES, seed: int = SIM_SEED) -> dict:
    """Best per-prompt strategy vs always strategy 6, one image, by Monte Carlo over prompts.

    Each prompt (complexity ``c``) gets ``n_rep`` draws of its effect ``u ~ N(0, prompt_sd)`` and of
    one effect per aspect ``delta_a ~ N(0, tau)`` (z). Strategy s's mean (points) is
    ``anchor + scale (b_c (c - c_ref) + sum_{a in s} (gain_a + slope_a (c - c_data) + delta_a)) + u``;
    the assessor sees ``N(mean, scale sqrt(seed_sd^2 + noise^2))`` clipped to [0, 10]. The
    oracle picks, per prompt and draw, the strategy with the highest criterion (success
    probability at the threshold, its mean over thresholds uniform on [7.5, 8.5], or the mean
    score); returned are the averages for the oracle, always-6 and raw, and the oracle's shares.
    """
    rng = np.random.default_rng(seed)
    c = np.repeat(np.asarray(complexities, dtype=float), n_rep)
    n = len(c)
    u = rng.standard_normal(n) * prompt_sd_z
    delta = rng.standard_normal((n, len(ASPECTS))) * tau
    n_s = len(STRATEGY_NAMES)
    mu_z = np.empty((n, n_s))
    for s in range(n_s):
        used = [ASPECTS.index(a) for a in strategy_aspects(s, reading)]
        eff = sum((gains[ASPECTS[i]] + slopes[ASPECTS[i]] * (c - c_data) + delta[:, i] for i in used), np.zeros(n))
        mu_z[:, s] = complexity_slope_z * (c - c_ref) + eff + u
    mu = anchor + scale * mu_z
    sd = scale * math.sqrt(seed_sd_z**2 + noise_z**2)
    crit: dict[str, np.ndarray] = {f"t{t}": prob_max_at_least(t, mu, sd) for t in SIM_THRESHOLDS}
    tt = np.linspace(SIM_THRESHOLDS[0], SIM_THRESHOLDS[-1], 11)
    crit["uniform_7.5_8.5"] = np.mean([prob_max_at_least(t, mu, sd) for t in tt], axis=0)
    crit["mean_score"] = expected_max_normal(mu, sd, 1, SCORE_MIN, SCORE_MAX)
    out = {}
    for key, val in crit.items():
        best = val.max(axis=1).mean()
        always6 = val[:, 6].mean()
        raw = val[:, 0].mean()
        shares = np.bincount(val.argmax(axis=1), minlength=n_s) / n
        out[key] = {"best": float(best), "always_6": float(always6), "raw": float(raw),
                    "best_over_always_6": float(best / always6),
                    "best_minus_always_6": float(best - always6),
                    "best_strategy_share": {int(s): float(p) for s, p in enumerate(shares) if p > 0}}
    return out


def implied_gain_ci(complexities: np.ndarray, gains: dict[str, float], gain_cov: np.ndarray, *,
                    n_draws: int = SIM_PARAM_DRAWS, n_rep: int = SIM_PARAM_REPLICATES, seed: int = SIM_SEED + 1,
                    **kw: Any) -> dict:
    """95 % intervals of the oracle/always-6 ratios from the uncertainty of the aspect gains.

    The six gains are drawn ``n_draws`` times from their joint normal (the regression's
    covariance); each draw is simulated with :func:`implied_gain` (``n_rep`` replicates per
    prompt). Slopes, per-prompt SD and noise are held fixed (they are the row's scenario).
    """
    rng = np.random.default_rng(seed)
    g0 = np.array([gains[a] for a in ASPECTS])
    draws = rng.multivariate_normal(g0, np.asarray(gain_cov), size=n_draws)
    keys = ("uniform_7.5_8.5", "mean_score")
    ratios: dict[str, list[float]] = {k: [] for k in keys}
    for i, g in enumerate(draws):
        res = implied_gain(complexities, dict(zip(ASPECTS, g)), n_rep=n_rep, seed=seed + 1 + i, **kw)
        for k in keys:
            ratios[k].append(res[k]["best_over_always_6"])
    return {k: pct_ci(np.array(v)) for k, v in ratios.items()}


def implied_gain_grid(derived: dict, complexities: np.ndarray) -> dict:
    """The implied-gain grid: reading x slopes (current choice, data) x tau x assessor noise."""
    model = dqs.build_model(derived["base"])
    asp = derived["aspects_strategies"]
    gains = {a: asp["aspects"][a]["gain_at_data_mean_c"]["value"] for a in ASPECTS}
    slope_sets = {
        "current_choice": {a: model["aspects"][a]["slope_z"] for a in ASPECTS},
        "data": {a: asp["aspects"][a]["slope_per_unit_c"]["value"] for a in ASPECTS},
    }
    # per-aspect SD of the per-prompt effects: none; AGIQA-3k's per-modifier SD; as an upper reading, the
    # AGIQA-1k SD of the realistic-minus-anime contrast across main objects taken as one aspect's SD
    # (per modifier it is that / sqrt(2), close to AGIQA-3k's)
    taus = {"none": 0.0,
            "agiqa3k_per_modifier": derived["base"]["agiqa3k"]["heterogeneity"]["sd_per_modifier_z"],
            "agiqa1k_contrast": derived["agiqa1k_style"]["sd_across_main_objects_z"]}
    noise = derived["assessor_noise"]
    noises = {"none": 0.0, "one_rater": noise["one_rater_sd_z"]}
    common = dict(c_data=asp["c_data"], seed_sd_z=model["seed_sd_z"], prompt_sd_z=model["prompt_sd_z"],
                  complexity_slope_z=model["complexity_slope_z"])
    rows = []
    for reading, (sname, slopes), (tname, tau), (nname, nz) in itertools.product(
            ("printed", "cumulative"), slope_sets.items(), taus.items(), noises.items()):
        res = implied_gain(complexities, gains, slopes, reading=reading, tau=tau, noise_z=nz, **common)
        row = {"reading": reading, "slopes": sname, "per_prompt_sd": tname, "tau_z": tau,
               "assessor_noise": nname, "noise_z": nz, "results": res}
        if sname == "current_choice":
            row["ratio_ci_from_gain_uncertainty"] = implied_gain_ci(
                complexities, gains, np.array(asp["gain_cov"]), slopes=slopes, reading=reading, tau=tau,
                noise_z=nz, **common)
        rows.append(row)
    return {"settings": {"anchor": dqs.ANCHOR, "scale": dqs.SCALE, "c_ref": dqs.C_REF, **common,
                         "gains_at_c_data": gains, "slopes": slope_sets, "replicates_per_prompt": SIM_REPLICATES,
                         "seed": SIM_SEED, "n_images": 1},
            "rows": rows}


# ---------------------------------------------------------------------------
# Everything
# ---------------------------------------------------------------------------


def derive_all(data_dir: Path, n_boot: int = N_BOOT) -> dict:
    """All statistics of sections 1-5 (the data part); ``implied_gain_grid`` adds section 6."""
    data_dir = Path(data_dir)
    a23 = dqs.load_aigciqa2023(data_dir)
    a3k = dqs.load_agiqa3k(data_dir)
    a1k = dqs.load_agiqa1k(data_dir)
    booster = dqs.bestprompts_booster_weights(dqs.load_bestprompts_keywords(data_dir))
    base = dqs.derive_all(data_dir)
    model = dqs.build_model(base)
    asp = aspects_and_strategies(a3k, booster)
    for a in ASPECTS:
        asp["aspects"][a]["current_choice_slope_z"] = model["aspects"][a]["slope_z"]
    return {
        "base": base,
        "aspects_strategies": asp,
        "agiqa1k_style": agiqa1k_style_by_object(a1k, n_boot),
        "aigciqa_generator": aigciqa_generator_by_prompt(a23, n_boot=n_boot),
        "best_of_k": best_of_k_all(a23),
        "assessor_noise": assessor_noise(a3k, n_boot=n_boot),
    }


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

ROWS = {
    "AGIQA-3k": "sd1.5_{normal,lowstep,lowcorr,highcorr}_NNN (300 prompts x 4 settings), mos_quality; "
                "each setting's mean removed; OLS on prompt means with HC3",
    "AGIQA-1k": "deepai_* (Stable Diffusion 2.0): 12 main objects x 15 second objects x 2 places x 2 styles, MOS "
                "z-scored over the 720 images",
    "AIGCIQA2023-normal": "model in {Controlnet, DALLE, Glide, Lafite}: 100 prompts x 4 seeds each, quality_mos",
    "AIGCIQA2023-SD": "model == stable-diffusion: 100 prompts x 4 seeds, quality_mos",
    "AGIQA-3k-std": "sd1.5 rows (1200 images), std_quality over the z-unit of mos_quality",
}


def _v(d: dict) -> dict:
    return {"value": d["value"], "ci": d["ci"]}


def to_document(derived: dict, grid: dict, calib_label: str) -> dict:
    """The YAML document (every number with its CI, source, rows and the deriving function)."""
    asp = derived["aspects_strategies"]
    base = derived["base"]
    src3k, src1k, src23 = dqs.SOURCES["AGIQA-3k"], dqs.SOURCES["AGIQA-1k"], dqs.SOURCES["AIGCIQA2023"]
    het3k = base["agiqa3k"]["heterogeneity"]
    a1 = derived["agiqa1k_style"]
    g23 = derived["aigciqa_generator"]
    bok = derived["best_of_k"]
    noise = derived["assessor_noise"]
    doc: dict[str, Any] = {
        "schema": 1,
        "generated_by": "scripts/derive_strategy_effects.py",
        "command": COMMAND,
        "status": "derived; the ratings quality profile takes its best-of-k factor, pooled slope and per-prompt SD "
                  "(scripts/derive_quality_stats.py --profile ratings)",
        "units": "z = total SD of one Stable Diffusion image's quality rating in the dataset; points = 0-10 "
                 f"assessor scale under the current mapping (scale {dqs.SCALE} points per z)",
        "aspect_gains": {
            "source": src3k, "rows": ROWS["AGIQA-3k"],
            "function": "aspects_and_strategies",
            "c_data": asp["c_data"], "c_ref": asp["c_ref"],
            "note": "gain_at_data_mean_c: additive modifier regression (docs 3.4, 4.3 mapping); slope_per_unit_c: "
                    "the same weights applied to modifier x (c - c0) interactions of one joint regression; "
                    "gain_at_c_ref_data_slopes: that joint regression centred at c_ref",
            **{a: {"modifiers": v["modifiers"],
                   "gain_at_data_mean_c": _v(v["gain_at_data_mean_c"]),
                   "slope_per_unit_c": _v(v["slope_per_unit_c"]),
                   "current_choice_slope_z": v["current_choice_slope_z"],
                   "gain_at_c_ref_data_slopes": _v(v["gain_at_c_ref_data_slopes"])}
               for a, v in asp["aspects"].items()},
            "pooled_any_modifier_slope": {"value": asp["pooled_any_modifier_slope"]["slope_z"],
                                          "ci": asp["pooled_any_modifier_slope"]["ci"]},
        },
        "strategy_means": {
            "source": src3k, "rows": ROWS["AGIQA-3k"], "function": "aspects_and_strategies",
            "readings": {"printed": "strategy 1 = object; strategy s >= 2 = object + aspect s (Table II as printed)",
                         "cumulative": "strategy s = aspects 1..s (the project's reading)"},
            **{reading: [{"id": r["id"], "name": STRATEGY_NAMES[r["id"]], "aspects": r["aspects"],
                          "mean_at_data_mean_c": _v(r["mean_at_data_mean_c"]),
                          "slope_per_unit_c": _v(r["slope_per_unit_c"]),
                          "mean_at_c_ref_data_slopes": _v(r["mean_at_c_ref_data_slopes"])}
                         for r in rows]
               for reading, rows in asp["strategies"].items()},
        },
        "per_prompt_effects": {
            "agiqa3k_per_modifier": {
                "source": src3k, "rows": ROWS["AGIQA-3k"],
                "function": "derive_quality_stats.agiqa3k_heterogeneity",
                "sd_z": {"value": het3k["sd_per_modifier_z"], "ci": het3k["sd_per_modifier_ci"]},
                "var_per_modifier_z2": {"value": het3k["var_per_modifier_z2"], "ci": het3k["var_per_modifier_ci"]},
            },
            "agiqa1k_style_by_main_object": {
                "source": src1k, "rows": ROWS["AGIQA-1k"], "function": "agiqa1k_style_by_object",
                "realistic_minus_anime_z": {"value": a1["realistic_minus_anime_z"], "ci": a1["realistic_minus_anime_ci"]},
                "sd_across_main_objects_z": {"value": a1["sd_across_main_objects_z"], "ci": a1["sd_across_main_objects_ci"],
                                             "ci_method": "two-way bootstrap: objects within class x (second object, "
                                                          "place) blocks"},
                "per_modifier_sd_z": {"value": a1["per_modifier_sd_z"], "ci": a1["per_modifier_sd_ci"],
                                      "note": "SD of a contrast of two modifiers / sqrt(2)"},
                "test": {"F": a1["F"], "df": a1["F_df"], "p_F": a1["p_F"], "p_permutation": a1["p_permutation"],
                         "n_permutations": a1["n_permutations"]},
                "by_main_object_z": a1["by_main_object"],
                "content_features": {
                    "object_class": {"classes": {lv: [AGIQA1K_OBJECTS[i] for i, c in AGIQA1K_OBJECT_CLASS.items() if c == lv]
                                                 for lv in sorted(set(AGIQA1K_OBJECT_CLASS.values()))},
                                     "effect_by_class_z": a1["by_class"],
                                     "share_of_interaction": {"value": a1["class_share"], "ci": a1["class_share_ci"],
                                                              "ci_method": "delete-one-object jackknife"},
                                     "F_vs_objects_within_class": a1["class_F_vs_objects_within_class"],
                                     "df": a1["class_F_df"], "p": a1["class_p"]},
                    "second_object": a1["second_object"],
                    "place": a1["place"],
                    "complexity": "no signal possible: prompt_complexity is 0.2 for every AGIQA-1k prompt but "
                                  "'teddy bear' (0.3)",
                },
            },
            "aigciqa2023_generator_by_prompt": {
                "source": src23, "rows": ROWS["AIGCIQA2023-normal"] + "; z within generator",
                "function": "aigciqa_generator_by_prompt",
                "per_generator_sd_z": {"value": g23["per_generator_sd_z"], "ci": g23["per_generator_sd_ci"],
                                       "ci_method": "bootstrap over prompts"},
                "test": {"F": g23["F"], "df": g23["F_df"], "log10_p_F": math.log10(g23["p_F"])},
                "share_of_interaction_by_class": {"value": g23["interaction_share_class"],
                                                  "ci": g23["interaction_share_class_ci"],
                                                  "ci_method": "delete-one-prompt jackknife"},
                "share_of_interaction_by_style": {"value": g23["interaction_share_style"],
                                                  "ci": g23["interaction_share_style_ci"],
                                                  "ci_method": "delete-one-prompt jackknife"},
                "share_of_prompt_effect_by_class": {"value": g23["prompt_effect_share_class"],
                                                    "ci": g23["prompt_effect_share_class_ci"],
                                                    "p_vs_prompts_within": g23["prompt_effect_class_p"]},
                "share_of_prompt_effect_by_style": {"value": g23["prompt_effect_share_style"],
                                                    "ci": g23["prompt_effect_share_style_ci"],
                                                    "p_vs_prompts_within": g23["prompt_effect_style_p"]},
            },
        },
        "best_of_k_factor": {
            "source": src23, "rows": ROWS["AIGCIQA2023-normal"] + "; and " + ROWS["AIGCIQA2023-SD"],
            "function": "best_of_k_all (derive_quality_stats.aigciqa_best_of_k per generator; best_of_k_pooled)",
            "method": "empirical best-of-k gain over the prompt mean (exact over 4-seed subsets) / seed SD, "
                      "least squares ratio to the normal's over k = 2..4; bootstrap over prompts",
            "per_generator": {g: {"f": {"value": v["f"], "ci": v["f_ci"]}} for g, v in bok["per_generator"].items()},
            "pooled_normal_generators": {"value": bok["pooled_normal"]["f"], "ci": bok["pooled_normal"]["f_ci"],
                                         "gain_seed_sd_by_k": bok["pooled_normal"]["gain_seed_sd_by_k"],
                                         "normal_gain_seed_sd_by_k": bok["pooled_normal"]["normal_gain_seed_sd_by_k"]},
            "in_use": {"value": base["aigciqa2023"]["best_of_k"]["normal_factor"],
                       "from": "stable-diffusion rows (docs 3.2), which docs 3.1 finds anomalous"},
        },
        "assessor_noise": {
            "source": src3k, "rows": ROWS["AGIQA-3k-std"], "function": "assessor_noise",
            "raters_per_image": {"value": AGIQA3K_RATERS, "from": "AGIQA-3K paper (arXiv 2306.04717), subjective "
                                                                   "experiment; not in the data files"},
            "one_rater_sd_z": {"value": noise["one_rater_sd_z"], "ci": noise["one_rater_sd_ci"]},
            "one_rater_sd_points": {"value": noise["one_rater_sd_points"], "ci": noise["one_rater_sd_points_ci"]},
            "panel_mean_sd_z": {"value": noise["panel_mean_sd_z"], "ci": noise["panel_mean_sd_ci"]},
            "panel_mean_sd_points": noise["panel_mean_sd_points"],
            "one_rater_reliability": noise["one_rater_reliability"],
            "all_six_generators_one_rater_sd_over_total_mos_sd": noise["all_six_generators_one_rater_sd_over_total_mos_sd"],
            "std_vs_mos_correlation": noise["std_vs_mos_correlation"],
            "default_choice": {"which": ASSESSOR_NOISE_DEFAULT, "value_z": noise["one_rater_sd_z"],
                               "why": "a single automatic judge is one rater; the data size one human rater's "
                                      "disagreement with the panel; no test-retest data for an automatic judge"},
            "not_used": "AIGCIQA2023 quality_std is on a scale not stated (mean 1.1 against a 0-100 MOS whose SD is "
                        "5-9) and cannot be mapped; AGIQA-1k has no per-image SD; TIFA's two annotators rate "
                        "faithfulness, not quality",
        },
        "implied_gain": {
            "function": "implied_gain_grid / implied_gain",
            "over": calib_label,
            "settings": grid["settings"],
            "ci_note": "ratio_ci_from_gain_uncertainty: 2.5-97.5 % of the ratio over draws of the six aspect "
                       "gains from their joint normal (regression covariance), slopes / tau / noise held at the "
                       "row's values; given for the current-choice slopes only (the data slopes' CIs span "
                       "several z per unit c, so the ratio is not bounded by them)",
            "rows": [{k: v for k, v in r.items() if k != "results"} | {
                "best_over_always_6": {key: res["best_over_always_6"] for key, res in r["results"].items()},
                "best": {key: res["best"] for key, res in r["results"].items()},
                "always_6": {key: res["always_6"] for key, res in r["results"].items()},
                "raw": {key: res["raw"] for key, res in r["results"].items()},
                "best_strategy_share_uniform": r["results"]["uniform_7.5_8.5"]["best_strategy_share"],
            } for r in grid["rows"]],
        },
    }
    return dqs.rnd(doc)


HEADER = """\
# Strategy effects the rating data support -- derived statistics, NOT yet used by the model.
# GENERATED by scripts/derive_strategy_effects.py -- do not edit by hand. Regenerate with
#   python scripts/derive_strategy_effects.py --data ../shared/data/aigc-quality --out sim/data/quality_strategy_effects.yaml
# Sources (data files not copied, statistics only; as named in the data directory's MANIFEST.txt):
#   AGIQA-3k     github lcysyzxdxc/AGIQA-3k-Database @30ded2b (MIT), data.csv
#   AGIQA-1k     github lcysyzxdxc/AGIQA-1k-Database @7a8d9f2 (MIT), AIGC_MOS_Zscore.xlsx
#   AIGCIQA2023  github wangjiarui153/AIGCIQA2023, AIGCIQA2023.csv from refs/pull/4/head @68283bb (no licence
#                file); AIGCIQA2023_with_model.csv = its rows joined with pic-index.xlsx row order
#   BestPrompts  github Toloka/BestPrompts @5856311 (CC-BY data / Apache code), keywords.csv (quality-booster weights)
# What each number is and which are choices: docs/quality_model.md, section 7. CIs are 95 %.
"""


def summary_text(derived: dict, grid: dict) -> str:
    """Human-readable summary of every derived quantity."""
    L: list[str] = []
    _r = lambda c: f"[{c[0]:.3f}, {c[1]:.3f}]"  # noqa: E731
    asp = derived["aspects_strategies"]
    f = lambda d: f"{d['value']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"  # noqa: E731
    L.append(f"== 1/3. Aspects (AGIQA-3k sd1.5; gains at c = {asp['c_data']:.3f}, slopes per unit c) ==")
    for a, v in asp["aspects"].items():
        L.append(f"  {a:12s} gain {f(v['gain_at_data_mean_c'])}  slope {f(v['slope_per_unit_c'])} "
                 f"(current choice {v['current_choice_slope_z']:+.3f})  gain at c_ref {f(v['gain_at_c_ref_data_slopes'])}")
    p = asp["pooled_any_modifier_slope"]
    L.append(f"  pooled per-modifier slope {p['slope_z']:+.3f} [{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}]")
    for reading, rows in asp["strategies"].items():
        L.append(f"  strategies, {reading}:")
        for r in rows:
            L.append(f"    {r['id']} {STRATEGY_NAMES[r['id']]:17s} {f(r['mean_at_data_mean_c'])}  slope {f(r['slope_per_unit_c'])}"
                     f"  at c_ref {f(r['mean_at_c_ref_data_slopes'])}")
    het = derived["base"]["agiqa3k"]["heterogeneity"]
    L.append("== 2. Per-prompt effects ==")
    L.append(f"  AGIQA-3k per-modifier SD {het['sd_per_modifier_z']:.3f} [{het['sd_per_modifier_ci'][0]:.3f}, "
             f"{het['sd_per_modifier_ci'][1]:.3f}]")
    a1 = derived["agiqa1k_style"]
    L.append(f"  AGIQA-1k realistic-anime {a1['realistic_minus_anime_z']:+.3f} {_r(a1['realistic_minus_anime_ci'])}; SD across "
             f"main objects {a1['sd_across_main_objects_z']:.3f} {_r(a1['sd_across_main_objects_ci'])} (per modifier "
             f"{a1['per_modifier_sd_z']:.3f}); F {a1['F']:.2f} df {a1['F_df']} p {a1['p_F']:.1e}, permutation p "
             f"{a1['p_permutation']:.1e}")
    L.append("    by object: " + ", ".join(f"{k} {v:+.2f}" for k, v in a1["by_main_object"].items()))
    L.append("    by class: " + ", ".join(f"{k} {v:+.2f}" for k, v in a1["by_class"].items()))
    L.append(f"    class share {a1['class_share']:.2f} {_r(a1['class_share_ci'])}, F vs objects within class "
             f"{a1['class_F_vs_objects_within_class']:.2f} df {a1['class_F_df']} p {a1['class_p']:.3f}")
    L.append(f"    second object: SD {a1['second_object']['sd_z']:.3f}, p {a1['second_object']['p_F']:.1e}; place: SD "
             f"{a1['place']['sd_z']:.3f}, p {a1['place']['p_F']:.3f}")
    g = derived["aigciqa_generator"]
    L.append(f"  AIGCIQA2023 generator x prompt (4 normal generators): per-generator SD {g['per_generator_sd_z']:.3f} "
             f"{_r(g['per_generator_sd_ci'])}, F {g['F']:.2f} p {g['p_F']:.1e}; share by class "
             f"{g['interaction_share_class']:.2f} {_r(g['interaction_share_class_ci'])}, by style {g['interaction_share_style']:.2f} "
             f"{_r(g['interaction_share_style_ci'])}")
    L.append(f"    prompt effect share by class {g['prompt_effect_share_class']:.2f} {_r(g['prompt_effect_share_class_ci'])} "
             f"(p {g['prompt_effect_class_p']:.3f}), by style {g['prompt_effect_share_style']:.2f} "
             f"{_r(g['prompt_effect_share_style_ci'])} (p {g['prompt_effect_style_p']:.3f})")
    b = derived["best_of_k"]
    L.append("== 4. Best-of-k factor f ==")
    for gname, v in b["per_generator"].items():
        L.append(f"  {gname:17s} {v['f']:.3f} [{v['f_ci'][0]:.3f}, {v['f_ci'][1]:.3f}]")
    L.append(f"  pooled normal     {b['pooled_normal']['f']:.3f} {_r(b['pooled_normal']['f_ci'])}")
    n = derived["assessor_noise"]
    L.append("== 5. Assessor noise (AGIQA-3k sd1.5 std_quality) ==")
    L.append(f"  one rater {n['one_rater_sd_z']:.3f} z {_r(n['one_rater_sd_ci'])} = {n['one_rater_sd_points']:.3f} points; "
             f"panel of {n['raters_per_image']} {n['panel_mean_sd_z']:.3f} z = {n['panel_mean_sd_points']:.3f} points; "
             f"one-rater reliability {n['one_rater_reliability']:.2f}")
    L.append("== 6. Implied gain, best per-prompt strategy / always-6 (one image) ==")
    L.append("  reading    slopes          tau                  noise      t7.5   t8.0   t8.5   unif   mean(ratio)  shares(unif)")
    for r in grid["rows"]:
        res = r["results"]
        L.append(f"  {r['reading']:10s} {r['slopes']:15s} {r['per_prompt_sd']:20s} {r['assessor_noise']:10s} "
                 + " ".join(f"{res[k]['best_over_always_6']:.2f}x" for k in ("t7.5", "t8.0", "t8.5", "uniform_7.5_8.5"))
                 + (" [{:.2f}, {:.2f}]".format(*r["ratio_ci_from_gain_uncertainty"]["uniform_7.5_8.5"])
                    if "ratio_ci_from_gain_uncertainty" in r else "")
                 + f"  {res['mean_score']['best_over_always_6']:.3f}x ({res['mean_score']['best_minus_always_6']:+.2f})  "
                 + ",".join(f"{s}:{p:.2f}" for s, p in res["uniform_7.5_8.5"]["best_strategy_share"].items()))
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=dqs.DEFAULT_DATA, help="aigc-quality data directory (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"write the YAML here (the shipped one is {DEFAULT_OUT.relative_to(REPO_ROOT)}); "
                         "without it, only print the summary")
    args = ap.parse_args(argv)
    if not (args.data / "MANIFEST.txt").is_file():
        print(f"error: {args.data} is not the aigc-quality data directory (no MANIFEST.txt)", file=sys.stderr)
        return 2
    derived = derive_all(args.data)
    label, complexities = dqs.calibration_complexities()
    grid = implied_gain_grid(derived, complexities)
    print(summary_text(derived, grid))
    if args.out is not None:
        doc = to_document(derived, grid, label)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(HEADER + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110,
                                                    default_flow_style=None), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
