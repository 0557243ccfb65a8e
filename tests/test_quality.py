"""Tests of the quality model (sim/model/quality.py) and of the statistics it ships (scripts/derive_quality_stats.py)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from sim.model.quality import (
    DamageParams,
    QualityModel,
    content_words,
    expected_max_normal,
    prompt_complexity,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "aigc-quality"
GENERATION = REPO / "sim" / "data" / "quality_generation.yaml"
HAVE_DATA = (DATA / "MANIFEST.txt").is_file()


@pytest.fixture(scope="module")
def qm() -> QualityModel:
    return QualityModel.default()


@pytest.fixture(scope="module")
def shipped() -> dict:
    return yaml.safe_load(GENERATION.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("derive_quality_stats")


def make_model(anchor: float = 6.0, scale: float = 1.0, seed_sd_z: float = 1.0, **kw) -> QualityModel:
    args = dict(
        anchor=anchor, scale=scale, c_ref=0.5, seed_sd_z=seed_sd_z, prompt_sd_z=0.5, complexity_slope_z=0.0,
        offset_z=np.linspace(0.0, 0.6, 7), slope_z=np.zeros(7),
    )
    args.update(kw)
    return QualityModel(**args)


def clipped_normal_moments(mu: float, sd: float, lo: float = 0.0, hi: float = 10.0) -> tuple[float, float]:
    """Mean and SD of clip(N(mu, sd), lo, hi), in closed form."""
    a, b = (lo - mu) / sd, (hi - mu) / sd
    pa, pb = stats.norm.cdf(a), stats.norm.sf(b)
    da, db = stats.norm.pdf(a), stats.norm.pdf(b)
    mid = stats.norm.cdf(b) - stats.norm.cdf(a)
    m1 = lo * pa + hi * pb + mu * mid + sd * (da - db)
    # E[Y^2; a < Z < b] for Y = mu + sd Z
    ez2 = mid + (a * da - b * db)
    m2 = lo**2 * pa + hi**2 * pb + mu**2 * mid + 2 * mu * sd * (da - db) + sd**2 * ez2
    return m1, math.sqrt(max(m2 - m1**2, 0.0))


# --- prompt complexity -------------------------------------------------------------------


def test_prompt_complexity_counts_content_words():
    assert content_words("A beach with a boat") == ["beach", "boat"]
    assert prompt_complexity("A beach with a boat") == 0.0
    assert prompt_complexity("A city with blue car") == pytest.approx(0.1)
    assert prompt_complexity("a corgi") == 0.0
    long = (
        "A tropical aquarium, with a school of bright orange clownfish darting between swaying anemones "
        "and small blue tangs"
    )
    assert prompt_complexity(long) == 1.0
    # each attribute adds complexity; case and punctuation do not
    p = "A harbor with a lighthouse"
    assert prompt_complexity(p) < prompt_complexity("A foggy harbor with a red lighthouse")
    assert prompt_complexity(p.upper()) == prompt_complexity(p + ".")
    with pytest.raises(TypeError):
        prompt_complexity(None)  # type: ignore[arg-type]


@pytest.mark.skipif(not (REPO / "sim/data/prompts.yaml").is_file(), reason="no shipped prompt set")
def test_shipped_prompts_span_the_complexity_range():
    texts = [p["text"] for p in yaml.safe_load((REPO / "sim/data/prompts.yaml").read_text())["prompts"]]
    c = np.array([prompt_complexity(t) for t in texts])
    assert c.min() == 0.0 and c.max() == 1.0 and 0.2 < c.mean() < 0.7


# --- the shipped YAML -------------------------------------------------------------------------


def test_default_model_loads_with_documented_sources(qm, shipped):
    assert qm.n_strategies == 7
    assert qm.generation_path.name == "quality_generation.yaml"
    assert 0 < qm.prompt_sd < qm.seed_sd < 2.0
    text = GENERATION.read_text(encoding="utf-8")
    for source in ("AIGCIQA2023", "AGIQA-3k-Database @30ded2b (MIT)", "BestPrompts @5856311", "derive_quality_stats.py"):
        assert source in text
    assert shipped["seed_sd"] == pytest.approx(qm.seed_sd, rel=1e-3)
    assert shipped["prompt_sd"] == pytest.approx(qm.prompt_sd, rel=1e-3)


def test_yaml_summary_and_strategies_are_consistent(qm, shipped):
    c = np.array(shipped["summary"]["c_values"])
    for s, name in enumerate(qm.strategy_names):
        assert np.allclose(shipped["summary"]["mean_score_at_c"][name], qm.mean_score(c, s), atol=6e-3)
    # cumulative strategies: each offset/slope is the sum of its aspects' gains/slopes
    aspects = shipped["aspects"]
    for entry in shipped["strategies"]:
        assert entry["offset_z"] == pytest.approx(sum(aspects[a]["gain_z_at_c_ref"] for a in entry["aspects"]), abs=1e-3)
        assert entry["slope_z"] == pytest.approx(sum(aspects[a]["slope_z"] for a in entry["aspects"]), abs=1e-3)
    # seed and prompt SD split the unit variance between them (up to the best-of-k factor on the seed part)
    d = shipped["derived"]
    icc = d["agiqa3k"]["variance"]["icc"]
    f = d["aigciqa2023"]["best_of_k"]["normal_factor"]
    assert shipped["prompt_sd_z"] == pytest.approx(math.sqrt(icc), rel=1e-3)
    assert shipped["seed_sd_z"] == pytest.approx(f * math.sqrt(1 - icc), rel=1e-3)


def _assert_close(actual, expected, path="derived"):
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(map(str, actual)) == set(map(str, expected)), path
        amap = {str(k): v for k, v in actual.items()}
        for k, v in expected.items():
            _assert_close(amap[str(k)], v, f"{path}.{k}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=2e-3, abs=1e-9), path
    else:
        assert actual == expected, path


@pytest.mark.skipif(not HAVE_DATA, reason=f"rating data not found at {DATA}")
def test_shipped_statistics_are_recomputed_from_the_data(script, shipped):
    derived = script.derive_all(DATA)
    _assert_close(script.rnd(derived), shipped["derived"])
    model = script.build_model(derived)
    for key in ("seed_sd_z", "prompt_sd_z", "complexity_slope_z"):
        assert model[key] == pytest.approx(shipped[key], rel=1e-6), key
    assert shipped["mapping"]["anchor"] == script.ANCHOR and shipped["mapping"]["scale"] == script.SCALE
    for mine, theirs in zip(model["strategies"], shipped["strategies"]):
        assert mine["offset_z"] == pytest.approx(theirs["offset_z"], abs=1e-9)
        assert mine["slope_z"] == pytest.approx(theirs["slope_z"], abs=1e-9)
    # key facts the model rests on
    a23 = derived["aigciqa2023"]
    assert a23["variance"]["n_prompts"] == 100 and a23["variance"]["seeds_per_prompt"] == 4
    gains = [a23["best_of_k"]["k"][k]["gain_seed_sd"] for k in (1, 2, 3, 4)]
    assert gains[0] == pytest.approx(0.0, abs=1e-12) and np.all(np.diff(gains) > 0)
    assert derived["agiqa3k"]["modifiers"]["n_prompts"] == 300


@pytest.mark.skipif(not HAVE_DATA, reason=f"rating data not found at {DATA}")
def test_best_of_k_subsets_is_exact(script):
    x = np.array([[1.0, 4.0, 2.0, 3.0]])
    # subsets of 2: maxima 4,2,3,4,4,3 -> mean 20/6
    assert script.best_of_k_subsets(x, 2)[0] == pytest.approx(20 / 6)
    assert script.best_of_k_subsets(x, 1)[0] == pytest.approx(2.5)
    assert script.best_of_k_subsets(x, 4)[0] == pytest.approx(4.0)


def test_script_rejects_a_missing_data_dir(script, tmp_path, capsys):
    assert script.main(["--data", str(tmp_path)]) == 2
    assert "MANIFEST.txt" in capsys.readouterr().err


# --- generation scores -----------------------------------------------------------------------


def test_sampled_scores_match_mean_and_seed_sd(qm):
    prompt = "A quiet harbor at dawn, with a red fishing boat"
    c = prompt_complexity(prompt)
    rng = np.random.default_rng(1)
    for s in (0, 6):
        x = qm.sample_scores(prompt, s, rng, 200_000, key=5)
        assert x.shape == (200_000,) and x.min() >= 0 and x.max() <= 10
        mu = float(qm.mean_score(c, s)) + qm.prompt_offset(prompt, 5)
        m, sd = clipped_normal_moments(mu, qm.seed_sd)
        assert x.mean() == pytest.approx(m, abs=4 * sd / math.sqrt(x.size))
        assert x.std() == pytest.approx(sd, rel=0.01)
        assert sd == pytest.approx(qm.seed_sd, rel=1e-3)  # clipping is negligible at these means


def test_sampling_is_clip_aware_near_the_top():
    m = make_model(anchor=9.6, scale=1.0, seed_sd_z=1.0, prompt_sd_z=0.0)
    x = m.sample_scores("A beach with a boat", 0, np.random.default_rng(2), 200_000)
    mu = float(m.mean_score(0.0, 0))
    mean, sd = clipped_normal_moments(mu, m.seed_sd)
    assert x.mean() == pytest.approx(mean, abs=4 * sd / math.sqrt(x.size))
    assert x.std() == pytest.approx(sd, rel=0.01)
    assert np.mean(x == 10.0) == pytest.approx(stats.norm.sf((10 - mu) / m.seed_sd), abs=0.004)
    assert float(m.expected_best_of_n(0.0, 0, 1)) == pytest.approx(mean, abs=1e-9)


def test_expected_best_of_n_matches_monte_carlo_and_grows_with_n(qm):
    rng = np.random.default_rng(3)
    clip_heavy = make_model(anchor=9.0, scale=1.5)
    for model, c, s, off in [(qm, 0.1, 6, 0.3), (qm, 0.9, 2, -0.5), (clip_heavy, 0.5, 3, 0.0)]:
        mu = float(model.mean_score(c, s)) + off
        previous = -np.inf
        for n in (1, 2, 4, 8):
            exact = float(model.expected_best_of_n(c, s, n, offset=off))
            draws = np.clip(mu + model.seed_sd * rng.standard_normal((100_000, n)), 0, 10).max(axis=1)
            assert exact == pytest.approx(draws.mean(), abs=4 * draws.std() / math.sqrt(draws.size) + 1e-6)
            assert exact > previous
            previous = exact
        assert float(model.expected_best_of_n(c, s, 1, offset=off)) == pytest.approx(
            clipped_normal_moments(mu, model.seed_sd)[0], abs=1e-9
        )


def test_expected_best_of_n_is_vectorised(qm):
    c = np.linspace(0, 1, 5)
    out = qm.expected_best_of_n(c[:, None], np.arange(7)[None, :], 4)
    assert out.shape == (5, 7)
    assert np.allclose(out[2, 6], qm.expected_best_of_n(0.5, 6, 4))
    n = np.array([1, 2, 3, 4])
    assert np.all(np.diff(qm.expected_best_of_n(0.5, 0, n)) > 0)
    assert np.allclose(expected_max_normal(0.0, 1.0, [2, 4]), [1 / math.sqrt(math.pi), 1.0293753730], atol=1e-8)


def test_prob_best_of_n_at_least_matches_monte_carlo(qm):
    rng = np.random.default_rng(4)
    c, off = 0.2, 0.4
    for s in (0, 6):
        mu = float(qm.mean_score(c, s)) + off
        for n in (1, 4):
            best = np.clip(mu + qm.seed_sd * rng.standard_normal((100_000, n)), 0, 10).max(axis=1)
            for t in (7.5, 8.0, 8.5):
                p = float(qm.prob_best_of_n_at_least(t, c, s, n, offset=off))
                assert p == pytest.approx(np.mean(best >= t), abs=4 * math.sqrt(p * (1 - p) / best.size) + 1e-4)
    assert float(qm.prob_best_of_n_at_least(0.0, c, 0, 1)) == 1.0
    assert float(qm.prob_best_of_n_at_least(10.5, c, 0, 1)) == 0.0
    p = qm.prob_best_of_n_at_least(np.array([7.5, 8.0, 8.5]), c, 6, np.array([[1], [4]]))
    assert p.shape == (2, 3) and np.all(np.diff(p, axis=1) < 0) and np.all(p[1] > p[0])


def test_prompt_offset_is_deterministic_and_normal(qm):
    p = "A dog with a colorful collar"
    a = qm.prompt_offset(p, 0)
    assert a == qm.prompt_offset(p, 0) == qm.prompt_offset("  a DOG with a colorful   collar ", 0)
    assert a != qm.prompt_offset(p, 1)
    assert a != qm.prompt_offset("A cat with a ball of yarn", 0)
    offsets = np.array([qm.prompt_offset(f"A garden with {i} fountains", 7) for i in range(3000)])
    assert abs(offsets.mean()) < 4 * qm.prompt_sd / math.sqrt(offsets.size)
    assert offsets.std() == pytest.approx(qm.prompt_sd, rel=0.06)
    with pytest.raises(ValueError, match="non-negative integer"):
        qm.prompt_offset(p, -1)
    with pytest.raises(ValueError):
        qm.prompt_offset(p, 1.5)  # type: ignore[arg-type]


def test_prompt_offset_does_not_depend_on_python_hash_seed(qm):
    code = "from sim.model.quality import QualityModel; print(repr(QualityModel.default().prompt_offset('A beach with a boat', 11)))"
    values = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
        values.add(float(out.stdout))
    assert values == {qm.prompt_offset("A beach with a boat", 11)}


# --- strategies -------------------------------------------------------------------------------


def test_strategy_properties_built_in(qm):
    c = np.linspace(0.0, 1.0, 11)
    means = np.array([qm.mean_score(c, s) for s in range(7)])  # strategies x complexity
    # a bare prompt gains from every added aspect: strategy 6 best, means rise with the strategy
    assert np.all(np.diff(means[:, 0]) > 0)
    # the most complex prompts are best left raw: always-6 is not optimal everywhere
    assert means[:, -1].argmax() == 0
    assert len(set(means.argmax(axis=0))) >= 2
    # object description helps simple prompts more than complex ones
    gain_obj = means[1] - means[0]
    assert gain_obj[0] > 0 > gain_obj[-1] and np.all(np.diff(gain_obj) < 0)
    # raw prompts score lower on complex prompts (measured slope is negative)
    assert means[0, 0] > means[0, -1]


def test_raw_prompts_rarely_meet_thresholds(qm, shipped):
    p = shipped["summary"]["p_success_threshold_uniform_7.5_8.5"]["uniform_n1"]
    assert p["raw"] < 0.1 < p["best_per_prompt"]
    assert p["best_per_prompt"] >= p["always_6"] > p["raw"]
    c = np.linspace(0, 1, 21)
    raw = qm.prob_best_of_n_at_least(7.5, c, 0, 1).mean()
    assert raw < 0.15


def test_invalid_strategy_and_inputs_are_rejected(qm):
    for bad in (7, -1, 2.5, "3", True, [0, 9]):
        with pytest.raises(ValueError, match=r"0\.\.6"):
            qm.mean_score(0.5, bad)
    with pytest.raises(ValueError, match=r"0\.\.6"):
        qm.sample_scores("A beach with a boat", 7, np.random.default_rng(0), 3)
    with pytest.raises(ValueError, match="integer >= 1"):
        qm.expected_best_of_n(0.5, 1, 0)
    with pytest.raises(ValueError, match="integer >= 1"):
        qm.prob_best_of_n_at_least(8.0, 0.5, 1, 2.5)
    with pytest.raises(ValueError, match="complexity"):
        qm.mean_score(1.5, 0)
    with pytest.raises(ValueError, match="NaN"):
        qm.prob_best_of_n_at_least(float("nan"), 0.5, 1, 1)


# --- damage -----------------------------------------------------------------------------------


def test_retention_is_one_at_zero_ber_and_falls_with_errors(qm):
    assert float(qm.retention(0.0, 10**7)) == 1.0
    ber = np.logspace(-9, -2, 30)
    r = qm.retention(ber, 8 * 50_000)
    assert r.shape == ber.shape and np.all(np.diff(r) < 0) and np.all((r > 0) & (r <= 1))
    d = DamageParams(e50=3.0, k=2.0)
    assert float(d.retention_of_errors(3.0)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="ber"):
        qm.retention(1.5, 100)
    with pytest.raises(ValueError, match="n_bits"):
        qm.retention(1e-6, -1)


def test_expected_received_score_and_undecodable(tmp_path):
    gen = tmp_path / "damage.yaml"
    gen.write_text("e50: 2.0\nk: 1.0\nundecodable_per_error: 0.1\nsource: test fit\n")
    m = QualityModel.from_yaml(GENERATION, gen)
    assert m.damage == DamageParams(e50=2.0, k=1.0, undecodable_per_error=0.1)
    assert m.damage_path == gen
    ber, n_bits = 1e-5, 200_000  # 2 expected errors
    assert float(m.retention(ber, n_bits)) == pytest.approx(0.5)
    assert float(m.p_undecodable(ber, n_bits)) == pytest.approx(1 - math.exp(-0.2))
    got = m.expected_received_score(np.array([8.0, 6.0]), ber, n_bits)
    assert np.allclose(got, np.array([8.0, 6.0]) * math.exp(-0.2) * 0.5)
    assert np.allclose(m.expected_received_score(7.0, 0.0, n_bits), 7.0)


def test_damage_yaml_formats_and_errors(tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text("k: 1.2\nformats:\n  jpeg: {e50: 0.5}\n  png: {e50: 4.0, k: 3.0, undecodable_per_error: 0.01}\n")
    assert DamageParams.from_yaml(f, "png") == DamageParams(4.0, 3.0, 0.01)
    assert DamageParams.from_yaml(f, "jpeg") == DamageParams(0.5, 1.2, 0.0)
    assert DamageParams.from_yaml(f) == DamageParams(0.5, 1.2, 0.0)  # default_format: jpeg
    with pytest.raises(ValueError, match="raw"):
        DamageParams.from_yaml(f, "raw")
    assert QualityModel.from_yaml(GENERATION, f, image_format="png").damage.e50 == 4.0
    f.write_text("e50: 1.0\n")
    with pytest.raises(ValueError, match="missing damage parameter"):
        DamageParams.from_yaml(f)
    f.write_text("e50: -1\nk: 1\n")
    with pytest.raises(ValueError, match="e50"):
        DamageParams.from_yaml(f)
    with pytest.raises(FileNotFoundError, match="not found"):
        QualityModel.from_yaml(GENERATION, tmp_path / "nope.yaml")


def test_default_damage_uses_the_packaged_file_when_present(qm):
    packaged = REPO / "sim" / "data" / "quality_damage.yaml"
    if packaged.is_file():
        assert qm.damage_path == packaged and qm.damage == DamageParams.from_yaml(packaged)
    else:
        assert qm.damage_path is None and qm.damage == DamageParams()


def test_generation_yaml_errors(tmp_path, shipped):
    bad = dict(shipped)
    bad["strategies"] = shipped["strategies"][:6]
    f = tmp_path / "g.yaml"
    f.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="7 entries"):
        QualityModel.from_yaml(f)
    bad = {k: v for k, v in shipped.items() if k != "seed_sd_z"}
    f.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="seed_sd_z"):
        QualityModel.from_yaml(f)
    with pytest.raises(FileNotFoundError):
        QualityModel.from_yaml(tmp_path / "missing.yaml")


def test_damage_terms_and_scores_from_normals_are_the_models_own():
    import numpy as np

    from sim.model.quality import QualityModel

    model = QualityModel.default()
    ber = np.array([[0.0], [1e-6], [1e-4]])
    p_undecodable, retention = model.damage_terms(ber, 120_000)
    assert p_undecodable.tolist() == model.p_undecodable(ber, 120_000).tolist()
    assert retention.tolist() == model.retention(ber, 120_000).tolist()
    with pytest.raises(ValueError, match="probability"):
        model.damage_terms(np.array([1.5]), 8)
    prompt = "a lighthouse on a cliff at dusk"
    drawn = model.sample_scores(prompt, 3, np.random.default_rng(4), 6)
    normals = np.random.default_rng(4).standard_normal(6)
    again = model.scores_from_normals(model.prompt_mean_score(prompt, 3), normals)
    assert again.tolist() == drawn.tolist()
    assert again.min() >= 0 and again.max() <= 10
