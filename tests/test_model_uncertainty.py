"""The parametric bootstrap over the strategy model and the cluster bootstraps the prompting claims use."""

from __future__ import annotations

import numpy as np
import pytest

from sim.model.quality import ASPECTS, STRATEGY_TABLES, QualityModel
from sim.model.quality_uncertainty import Estimate, StrategyParameters, draw_models
from sim.stats import cluster_bootstrap_mean, cluster_bootstrap_ratio


def test_with_aspects_sums_the_strategies_and_leaves_the_original_alone():
    qm = QualityModel.default(profile="ratings")
    before = qm.offset_z.copy()
    gains = np.arange(len(ASPECTS), dtype=float) / 10
    other = qm.with_aspects(gains, np.zeros(len(ASPECTS)), np.zeros(len(ASPECTS)), anchor=5.0)
    for s, rows in enumerate(STRATEGY_TABLES["printed"]):
        assert other.offset_z[s] == pytest.approx(gains[list(rows)].sum())
    assert np.all(other.slope_z == 0) and other.anchor == 5.0
    assert np.array_equal(qm.offset_z, before) and qm.anchor != 5.0
    prompt = "a red fox in the snow"
    assert other.strategy_effect_z(prompt, 6) == 0.0 and qm.strategy_effect_z(prompt, 6) != 0.0
    assert other.prompt_mean_score(prompt, 6) != qm.prompt_mean_score(prompt, 6)
    with pytest.raises(ValueError, match="prompt_sd_z must be >= 0"):
        qm.with_aspects(gains, gains, -np.ones(len(ASPECTS)))


def _exact(params: StrategyParameters) -> StrategyParameters:
    return StrategyParameters(tuple(Estimate(g.value, 0.0) for g in params.gains), Estimate(params.slope.value, 0.0),
                              Estimate(params.prompt_sd.value, 0.0), params.c_data)


@pytest.mark.parametrize("profile", ["ratings", "paper"])
def test_draws_without_uncertainty_give_back_the_profile(profile):
    base = QualityModel.default(profile=profile)
    (same,) = draw_models(base, 1, parameters=_exact(StrategyParameters.from_yaml()))
    # the profile's files hold 4 significant digits
    assert np.allclose(same.offset_z, base.offset_z, atol=2e-3)
    assert np.allclose(same.slope_z, base.slope_z, atol=1e-3)
    assert np.allclose(same.aspect_prompt_sd_z, base.aspect_prompt_sd_z, atol=1e-3)


def test_draws_follow_the_intervals():
    params = StrategyParameters.from_yaml()
    base = QualityModel.default(profile="ratings")
    models = draw_models(base, 2000, seed=3, parameters=params)
    slopes = np.array([m.aspect_slope_z[0] for m in models])
    assert slopes.mean() == pytest.approx(params.slope.value, abs=4 * params.slope.se / np.sqrt(2000))
    assert slopes.std() == pytest.approx(params.slope.se, rel=0.1)
    gains = np.array([m.aspect_offset_z - m.aspect_slope_z * (base.c_ref - params.c_data) for m in models])
    for a, g in enumerate(params.gains):
        assert gains[:, a].mean() == pytest.approx(g.value, abs=4 * g.se / np.sqrt(2000))
        assert gains[:, a].std() == pytest.approx(g.se, rel=0.1)
    sds = np.array([m.aspect_prompt_sd_z[0] for m in models])
    assert sds.min() >= 0 and np.mean(sds == 0) > 0  # truncated at 0: the interval reaches it
    assert draw_models(base, 3, seed=1)[2].offset_z.tolist() == draw_models(base, 3, seed=1)[2].offset_z.tolist()


def test_paper_draws_keep_the_calibration():
    params = _exact(StrategyParameters.from_yaml())
    ratings, paper = (draw_models(QualityModel.default(profile=p), 1, parameters=params)[0] for p in ("ratings", "paper"))
    ratio = paper.aspect_offset_z / ratings.aspect_offset_z
    assert np.allclose(ratio, ratio[0]) and ratio[0] < 0  # one gain scale for every aspect (the fitted -0.32)
    assert np.allclose(paper.aspect_prompt_sd_z / ratings.aspect_prompt_sd_z, 4.6455, rtol=1e-3)


def test_the_classic_profile_has_nothing_to_draw():
    with pytest.raises(ValueError, match="quality.profile: ratings or paper"):
        draw_models(QualityModel.default(), 5)


def test_cluster_bootstrap_mean_is_wider_when_clusters_are_alike_inside():
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(10), 50)
    alike = np.repeat(rng.random(10) < 0.5, 50).astype(float)  # everything decided per cluster
    mixed = (rng.random(500) < 0.5).astype(float)
    m1, lo1, hi1 = cluster_bootstrap_mean(alike, clusters)
    m2, lo2, hi2 = cluster_bootstrap_mean(mixed, clusters)
    assert lo1 <= m1 <= hi1 and lo2 <= m2 <= hi2
    assert hi1 - lo1 > 3 * (hi2 - lo2)


def test_cluster_bootstrap_ratio_tells_an_effect_from_none():
    rng = np.random.default_rng(1)
    clusters = np.repeat(np.arange(10), 60)
    base = (rng.random(600) < 0.1).astype(float)
    strong = (rng.random(600) < 0.3).astype(float)
    same = (rng.random(600) < 0.1).astype(float)
    r, lo, hi, p = cluster_bootstrap_ratio(strong, base, clusters)
    assert lo < r < hi and lo > 1.5 and p < 0.01
    r0, lo0, hi0, p0 = cluster_bootstrap_ratio(same, base, clusters)
    assert lo0 < 1 < hi0 and p0 > 0.05
    assert np.isnan(cluster_bootstrap_ratio([0, 0], [0, 0], [0, 1])[0])
    with pytest.raises(ValueError, match="same length"):
        cluster_bootstrap_ratio([1, 0], [1], [0, 1])
