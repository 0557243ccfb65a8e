"""Tests of scripts/derive_strategy_effects.py: its statistical helpers on synthetic data with known
answers, and (when the rating data are present) that the shipped sim/data/quality_strategy_effects.yaml
still matches what the script derives."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml


REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "aigc-quality"
SHIPPED = REPO / "sim" / "data" / "quality_strategy_effects.yaml"
HAVE_DATA = (DATA / "MANIFEST.txt").is_file()
NEED_DATA = pytest.mark.skipif(not HAVE_DATA, reason=f"rating data not found at {DATA} (see docs/quality_model.md, 2)")


@pytest.fixture(scope="module")
def se(load_script):
    return load_script("derive_strategy_effects")


@pytest.fixture(scope="module")
def shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def close(actual, expected, what: str, rel: float = 2e-3) -> None:
    """``actual`` (freshly derived) equals ``expected`` (the YAML, 4 significant digits)."""
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), what
        for i, (a, e) in enumerate(zip(actual, expected)):
            close(a, e, f"{what}[{i}]", rel)
    else:
        assert float(actual) == pytest.approx(float(expected), rel=rel, abs=1e-4 * rel), what


# ---------------------------------------------------------------------------
# Helpers on synthetic data (known answers)
# ---------------------------------------------------------------------------


def test_row_effect_sd_recovers_a_planted_sd(se):
    rng = np.random.default_rng(1)
    rows, cols, tau = 400, 30, 0.4
    planted = rng.normal(0, tau, (rows, 1))
    table = planted + rng.normal(0, 0.5, (1, cols)) + rng.normal(0, 1.0, (rows, cols))
    r = se.row_effect_sd(table)
    # within the estimator's SE (about 0.017 here) of the SD the rows actually got
    assert r["sd"] == pytest.approx(planted.std(ddof=1), abs=0.04)
    assert r["sd"] == pytest.approx(tau, abs=0.07)
    assert r["p"] < 1e-10
    null = se.row_effect_sd(rng.normal(0, 1.0, (rows, cols)) + rng.normal(0, 0.5, (1, cols)))
    assert null["sd"] < 0.08 and null["p"] > 0.01


def test_replicated_interaction_recovers_a_planted_sd(se):
    rng = np.random.default_rng(2)
    units, treatments, reps, tau = 400, 4, 4, 0.3
    main = rng.normal(0, 0.6, (units, 1, 1)) + rng.normal(0, 0.3, (1, treatments, 1))
    cube = main + rng.normal(0, tau, (units, treatments, 1)) + rng.normal(0, 1.0, (units, treatments, reps))
    r = se.replicated_interaction(cube)
    assert r["sd"] == pytest.approx(tau, abs=0.05)
    assert r["noise_var_cell"] == pytest.approx(1.0 / reps, rel=0.1)
    no_int = se.replicated_interaction(main + rng.normal(0, 1.0, cube.shape))
    assert no_int["sd"] < 0.1 and no_int["p"] > 0.01


def test_category_shares_are_one_when_the_category_is_everything_and_small_when_it_is_nothing(se):
    rng = np.random.default_rng(3)
    cats = np.repeat(np.arange(8), 25)  # 200 rows in 8 categories
    cat_effect = rng.normal(0, 0.5, 8)
    noise = rng.normal(0, 1.0, (200, 30))
    by_cat = se.category_share(cat_effect[cats][:, None] + noise, cats)
    # all between-row variation is the category's: share ~1, and the category beats rows within it
    assert by_cat["share"] > 0.9 and by_cat["p"] < 1e-6
    by_row = se.category_share(rng.normal(0, 0.5, (200, 1)) + noise, cats)
    assert by_row["share"] < 0.15 and by_row["p"] > 0.01
    # interaction version: a unit x treatment interaction that depends only on the unit's category
    inter = rng.normal(0, 0.5, (8, 4))[cats][:, :, None] + rng.normal(0, 1.0, (200, 4, 4))
    r = se.replicated_interaction(inter)
    assert se.interaction_category_share(r["residuals"], r["noise_var_cell"], cats) > 0.85
    inter0 = rng.normal(0, 0.5, (200, 4, 1)) + rng.normal(0, 1.0, (200, 4, 4))
    r0 = se.replicated_interaction(inter0)
    assert se.interaction_category_share(r0["residuals"], r0["noise_var_cell"], cats) < 0.15


def test_permutation_p_rows_separates_effect_from_null(se):
    rng = np.random.default_rng(4)
    effect = rng.normal(0, 0.6, (12, 1)) + rng.normal(0, 1.0, (12, 30))
    assert se.permutation_p_rows(effect, 500, np.random.default_rng(5)) < 0.01
    null = rng.normal(0, 1.0, (12, 30))
    assert se.permutation_p_rows(null, 500, np.random.default_rng(6)) > 0.05


def test_jackknife_of_a_mean_is_the_standard_error(se):
    x = np.random.default_rng(7).normal(0, 2.0, 50)
    lo, hi = se.jackknife_ci(lambda keep: x[keep].mean(), len(x))
    half = se.Z95 * x.std(ddof=1) / math.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - half) and hi == pytest.approx(x.mean() + half)


def test_strategy_readings(se):
    assert se.strategy_aspects(0, "printed") == () == se.strategy_aspects(0, "cumulative")
    assert se.strategy_aspects(1, "printed") == ("object",)
    assert se.strategy_aspects(4, "printed") == ("object", "lighting")
    assert se.strategy_aspects(6, "printed") == ("object", "negative")
    assert se.strategy_aspects(6, "cumulative") == se.ASPECTS
    with pytest.raises(ValueError, match="unknown reading"):
        se.strategy_aspects(2, "stacked")


def test_implied_gain_is_one_without_differences_and_grows_with_per_prompt_effects(se):
    c = np.linspace(0, 1, 11)
    zero = {a: 0.0 for a in se.ASPECTS}
    kw = dict(c_data=0.3, seed_sd_z=0.74, prompt_sd_z=0.53, complexity_slope_z=-0.2, n_rep=50)
    flat = se.implied_gain(c, zero, zero, reading="printed", tau=0.0, noise_z=0.0, **kw)
    for res in flat.values():
        assert res["best_over_always_6"] == pytest.approx(1.0)
    het = se.implied_gain(c, zero, zero, reading="printed", tau=0.3, noise_z=0.0, **kw)
    assert het["uniform_7.5_8.5"]["best_over_always_6"] > 1.2
    noisy = se.implied_gain(c, zero, zero, reading="printed", tau=0.3, noise_z=0.95, **kw)
    assert 1.0 < noisy["uniform_7.5_8.5"]["best_over_always_6"] < het["uniform_7.5_8.5"]["best_over_always_6"]


def test_script_rejects_a_missing_data_dir(se, tmp_path, capsys):
    assert se.main(["--data", str(tmp_path)]) == 2
    assert "MANIFEST.txt" in capsys.readouterr().err


def test_shipped_file_names_its_sources_and_command(shipped):
    text = SHIPPED.read_text(encoding="utf-8")
    for source in ("AGIQA-3k-Database @30ded2b (MIT)", "AGIQA-1k-Database @7a8d9f2 (MIT)", "AIGCIQA2023",
                   "BestPrompts @5856311", "derive_strategy_effects.py --data"):
        assert source in text, source
    assert "ratings quality profile" in shipped["status"]
    for section in ("aspect_gains", "strategy_means", "best_of_k_factor", "assessor_noise"):
        assert shipped[section]["source"] and shipped[section]["function"], section


# ---------------------------------------------------------------------------
# The shipped YAML against the data
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frames(se):
    dqs = se.dqs
    a3k = dqs.load_agiqa3k(DATA)
    booster = dqs.bestprompts_booster_weights(dqs.load_bestprompts_keywords(DATA))
    return {"a23": dqs.load_aigciqa2023(DATA), "a3k": a3k, "a1k": dqs.load_agiqa1k(DATA), "booster": booster}


@NEED_DATA
def test_aspects_and_strategy_means_match_the_shipped_file(se, shipped, frames):
    asp = se.aspects_and_strategies(frames["a3k"], frames["booster"])
    y = shipped["aspect_gains"]
    close(asp["c_data"], y["c_data"], "c_data")
    for a in se.ASPECTS:
        for key in ("gain_at_data_mean_c", "slope_per_unit_c", "gain_at_c_ref_data_slopes"):
            close(asp["aspects"][a][key]["value"], y[a][key]["value"], f"{a}.{key}")
            close(asp["aspects"][a][key]["ci"], y[a][key]["ci"], f"{a}.{key}.ci")
    for reading in ("printed", "cumulative"):
        for mine, theirs in zip(asp["strategies"][reading], shipped["strategy_means"][reading]):
            assert mine["aspects"] == theirs["aspects"]
            close(mine["mean_at_data_mean_c"]["value"], theirs["mean_at_data_mean_c"]["value"], f"{reading} s{mine['id']}")
            close(mine["mean_at_data_mean_c"]["ci"], theirs["mean_at_data_mean_c"]["ci"], f"{reading} s{mine['id']} ci")
    # the readings agree on strategies 1 and 2 and differ from 3 on
    p, c = asp["strategies"]["printed"], asp["strategies"]["cumulative"]
    assert p[2]["mean_at_data_mean_c"]["value"] == pytest.approx(c[2]["mean_at_data_mean_c"]["value"])
    assert p[6]["mean_at_data_mean_c"]["value"] != pytest.approx(c[6]["mean_at_data_mean_c"]["value"])


@NEED_DATA
def test_per_prompt_effects_match_the_shipped_file(se, shipped, frames):
    a1 = se.agiqa1k_style_by_object(frames["a1k"])
    y = shipped["per_prompt_effects"]["agiqa1k_style_by_main_object"]
    close(a1["realistic_minus_anime_z"], y["realistic_minus_anime_z"]["value"], "realistic - anime")
    close(a1["sd_across_main_objects_z"], y["sd_across_main_objects_z"]["value"], "SD across objects")
    close(a1["sd_across_main_objects_ci"], y["sd_across_main_objects_z"]["ci"], "SD across objects CI")
    close(a1["p_F"], y["test"]["p_F"], "F-test p")
    close(a1["class_share"], y["content_features"]["object_class"]["share_of_interaction"]["value"], "class share")
    assert a1["p_F"] < 1e-3 and a1["p_permutation"] < 1e-2  # the style effect does vary by main object
    g = se.aigciqa_generator_by_prompt(frames["a23"])
    y23 = shipped["per_prompt_effects"]["aigciqa2023_generator_by_prompt"]
    close(g["per_generator_sd_z"], y23["per_generator_sd_z"]["value"], "generator x prompt SD")
    close(g["per_generator_sd_ci"], y23["per_generator_sd_z"]["ci"], "generator x prompt SD CI")
    close(g["interaction_share_class"], y23["share_of_interaction_by_class"]["value"], "class share of interaction")
    close(g["interaction_share_class_ci"], y23["share_of_interaction_by_class"]["ci"], "class share CI")


@NEED_DATA
def test_best_of_k_and_assessor_noise_match_the_shipped_file(se, shipped, frames):
    b = se.best_of_k_all(frames["a23"])
    y = shipped["best_of_k_factor"]
    for g in (*se.NORMAL_GENERATORS, "stable-diffusion"):
        close(b["per_generator"][g]["f"], y["per_generator"][g]["f"]["value"], f"f {g}")
        close(b["per_generator"][g]["f_ci"], y["per_generator"][g]["f"]["ci"], f"f {g} CI")
    close(b["pooled_normal"]["f"], y["pooled_normal_generators"]["value"], "pooled f")
    close(b["pooled_normal"]["f_ci"], y["pooled_normal_generators"]["ci"], "pooled f CI")
    # the normal generators' best-of-k gains are those of a normal; the SD rows' are not
    assert 0.95 < b["pooled_normal"]["f"] < 1.05 and b["per_generator"]["stable-diffusion"]["f_ci"][1] < 0.95
    n = se.assessor_noise(frames["a3k"])
    yn = shipped["assessor_noise"]
    close(n["one_rater_sd_z"], yn["one_rater_sd_z"]["value"], "one-rater SD")
    close(n["one_rater_sd_ci"], yn["one_rater_sd_z"]["ci"], "one-rater SD CI")
    close(n["panel_mean_sd_z"], yn["panel_mean_sd_z"]["value"], "panel SD")
    close(n["one_rater_sd_points"], n["one_rater_sd_z"] * se.dqs.SCALE, "points = z x scale", rel=1e-12)


@NEED_DATA
def test_implied_gain_row_matches_the_shipped_file(se, shipped):
    """The first grid row (printed reading, current slopes, no per-prompt effects, no noise) re-simulated."""
    y = shipped["implied_gain"]
    st = y["settings"]
    row = y["rows"][0]
    assert (row["reading"], row["slopes"], row["per_prompt_sd"], row["assessor_noise"]) == (
        "printed", "current_choice", "none", "none")
    _, complexities = se.dqs.calibration_complexities()
    res = se.implied_gain(complexities, st["gains_at_c_data"], st["slopes"]["current_choice"], reading="printed",
                          tau=0.0, noise_z=0.0, c_data=st["c_data"], seed_sd_z=st["seed_sd_z"],
                          prompt_sd_z=st["prompt_sd_z"], complexity_slope_z=st["complexity_slope_z"])
    for key, value in row["best_over_always_6"].items():
        close(res[key]["best_over_always_6"], value, f"ratio {key}", rel=5e-3)
    assert 1.2 < res["uniform_7.5_8.5"]["best_over_always_6"] < 1.35  # Table II as printed, today's slopes: about 1.28x
