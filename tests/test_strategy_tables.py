"""Table II read as printed or cumulatively, and per-prompt strategy effects, in the prompt text and the quality model."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import parse_scenario
from sim.model.quality import ASPECTS, STRATEGY_TABLES, QualityModel
from sim.prompting.strategies import apply_strategy, aspects_of, default_corpus
from sim.world.simulation import World


def test_the_printed_table_is_the_object_description_plus_one_aspect():
    assert [aspects_of(s, "printed") for s in range(7)] == [
        (), ("object",), ("object", "environment"), ("object", "mood"), ("object", "lighting"),
        ("object", "quality"), ("object", "negative")]
    assert aspects_of(6, "cumulative") == ASPECTS
    with pytest.raises(ValueError, match="printed"):
        aspects_of(2, "stacked")


def test_the_prompt_text_follows_the_table():
    corpus = default_corpus("A garden with a fountain")
    printed, negative = apply_strategy("A garden with a fountain", 4, corpus, "printed")
    assert printed == f"A garden with a fountain, {corpus['object']}, {corpus['lighting']}" and negative == ""
    cumulative, _ = apply_strategy("A garden with a fountain", 4, corpus)
    assert cumulative.count(", ") > printed.count(", ")


def test_the_printed_model_sums_the_object_and_one_aspect():
    cumulative = QualityModel.default()
    printed = QualityModel.default(strategy_table="printed")
    a, h = printed.aspect_offset_z, printed.aspect_slope_z
    for s, rows in enumerate(STRATEGY_TABLES["printed"]):
        assert printed.offset_z[s] == pytest.approx(a[list(rows)].sum())
        assert printed.slope_z[s] == pytest.approx(h[list(rows)].sum())
    # the shipped cumulative strategies are the sums of the same aspects (to the file's 4 significant digits)
    for s, rows in enumerate(STRATEGY_TABLES["cumulative"]):
        assert cumulative.offset_z[s] == pytest.approx(a[list(rows)].sum(), abs=2e-4)
    assert printed.offset_z[1] == cumulative.offset_z[1] and printed.offset_z[0] == 0


def test_per_prompt_strategy_effects_are_fixed_by_prompt_and_have_the_asked_spread():
    base = QualityModel.default(strategy_table="printed")
    sds = np.array([0.3, 0.0, 0.2, 0.0, 0.0, 0.1])
    qm = QualityModel(anchor=base.anchor, scale=base.scale, c_ref=base.c_ref, seed_sd_z=base.seed_sd_z,
                      prompt_sd_z=base.prompt_sd_z, complexity_slope_z=base.complexity_slope_z,
                      offset_z=base.offset_z, slope_z=base.slope_z, aspect_offset_z=base.aspect_offset_z,
                      aspect_slope_z=base.aspect_slope_z, aspect_prompt_sd_z=sds, strategy_table="printed")
    prompts = [f"A scene number {i} with a thing" for i in range(3000)]
    effects = np.array([[qm.strategy_effect_z(p, s) for s in range(7)] for p in prompts])
    assert np.all(effects[:, 0] == 0)
    # strategy 3 = object (0.3) + mood (0.2): SD sqrt(0.13); strategy 2 = object + environment (0): SD 0.3
    assert effects[:, 3].std() == pytest.approx(np.sqrt(0.13), rel=0.06)
    assert effects[:, 2].std() == pytest.approx(0.3, rel=0.06)
    assert np.corrcoef(effects[:, 2], effects[:, 3])[0, 1] == pytest.approx(0.09 / (0.3 * np.sqrt(0.13)), abs=0.05)
    assert qm.strategy_effect_z(prompts[0], 3) == qm.strategy_effect_z(prompts[0], 3)  # fixed by the text
    assert qm.strategy_effect_z(prompts[0], 3, key=1) != qm.strategy_effect_z(prompts[0], 3, key=0)
    # the mean score of a prompt carries the effect, the prompt's own offset is unchanged
    p = prompts[0]
    assert qm.prompt_mean_score(p, 3) == pytest.approx(base.prompt_mean_score(p, 3) + qm.scale * effects[0, 3])
    assert qm.prompt_offset(p) == base.prompt_offset(p)
    # without the effects the best strategy is the same for every prompt of a complexity; with them it varies
    assert len({int(np.argmax(effects[i] + qm.offset_z)) for i in range(200)}) > 1


def test_a_scenario_chooses_the_reading_for_text_and_model():
    sc = parse_scenario({"name": "printed", "prompting": {"strategy_table": "printed"},
                         "prompt_agent": {"name": "empirical"}})
    world = World(sc)
    assert world.quality.strategy_table == "printed"
    result = world.run()
    rounds = [r for r in result.rounds if r.strategy == 6]
    prompts = {u.user_id: u.prompt for u in result.users}
    assert rounds
    for r in rounds:  # the object description only in the positive prompt (negative effects go apart)
        p = prompts[r.user_id]
        assert r.refined_prompt == apply_strategy(p, 1, default_corpus(p))[0] == apply_strategy(p, 6, default_corpus(p),
                                                                                                  "printed")[0]
    with pytest.raises(Exception, match="strategy_table"):
        parse_scenario({"name": "x", "prompting": {"strategy_table": "stacked"}})


def test_the_ratings_profile_reads_table_ii_as_printed_with_per_prompt_effects():
    qm = QualityModel.default(profile="ratings")
    assert qm.strategy_table == "printed"
    assert np.all(qm.aspect_prompt_sd_z > 0) and np.all(qm.aspect_content_share == 0.5)
    for s, rows in enumerate(STRATEGY_TABLES["printed"]):
        assert qm.offset_z[s] == pytest.approx(qm.aspect_offset_z[list(rows)].sum(), abs=2e-4)
    assert QualityModel.default(profile="ratings", strategy_table="cumulative").offset_z[6] == pytest.approx(
        qm.aspect_offset_z.sum())
    with pytest.raises(ValueError, match="profile"):
        QualityModel.default(profile="paper-ish")
    sc = parse_scenario({"name": "r", "quality": {"profile": "ratings"}})
    world = World(sc)
    assert world.quality.strategy_table == "printed" and world.quality.aspect_prompt_sd_z.any()


def test_prompts_share_the_content_part_of_their_effects_through_words_and_category():
    from sim.backends import build_quality_model
    from sim.model.quality import _category_normal, _content_normal

    qm = build_quality_model(parse_scenario({"name": "r", "quality": {"profile": "ratings"}}))
    a = 2  # mood
    sd, rho, kappa = qm.aspect_prompt_sd_z[a], qm.aspect_content_share[a], qm.aspect_category_share[a]
    assert rho == 0.5 and kappa == 0.5
    # the content part is the model's: the same in every run (key); the prompt's own part is not
    base = "A dog with a colorful collar"  # in the shipped set: category animals
    assert qm.category_of(base) == "animals" and qm.category_of("A teapot on Mars") == "other"
    assert qm.aspect_effect_z(base, a, key=1) != qm.aspect_effect_z(base, a, key=2)
    draws = [qm.aspect_effect_z(base, a, key=k) for k in range(400)]
    content = sd * np.sqrt(rho) * (np.sqrt(kappa) * _category_normal("animals", qm.content_seed, a)
                                   + np.sqrt(1 - kappa) * _content_normal(base, qm.content_seed, a))
    assert qm.text_effect_z(base, 3) == pytest.approx(
        sum(qm.aspect_prompt_sd_z[i] * np.sqrt(rho) * qm._content_z(base, i) for i in (0, 2)))
    assert np.mean(draws) == pytest.approx(content, abs=4 * sd * np.sqrt(1 - rho) / np.sqrt(len(draws)))
    assert np.std(draws) == pytest.approx(sd * np.sqrt(1 - rho), rel=0.12)
    # prompts of one category share its part: across them the effect varies less than the aspect's SD
    prompts = [f"A {w} garden with a {v} statue" for w in ("quiet", "noisy", "sunlit", "misty", "royal", "tiny")
               for v in ("marble", "bronze", "wooden", "golden", "broken", "giant", "old", "new")]
    effects = np.array([qm.aspect_effect_z(p, a, key=k) for p in prompts for k in range(20)])
    assert effects.std() == pytest.approx(sd * np.sqrt(1 - rho * kappa), rel=0.15)


@pytest.mark.skipif(not (__import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "aigc-quality"
                         / "MANIFEST.txt").is_file(), reason="rating data not found beside the checkout")
def test_the_shipped_ratings_file_is_recomputed_from_the_data(load_script):
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    script = load_script("derive_quality_stats")
    derived = script.derive_all(root.parent / "shared" / "data" / "aigc-quality")
    model = script.build_model(derived, "ratings")
    shipped = yaml.safe_load((root / "sim" / "data" / "quality_generation_ratings.yaml").read_text())
    assert shipped["profile"] == "ratings" and shipped["strategy_table"] == "printed"
    for key in ("seed_sd_z", "prompt_sd_z", "complexity_slope_z"):
        assert model[key] == pytest.approx(shipped[key], rel=1e-6), key
    for a in ASPECTS:
        for key in ("gain_z_at_c_ref", "slope_z", "prompt_sd_z", "content_share"):
            assert model["aspects"][a][key] == pytest.approx(shipped["aspects"][a][key], rel=1e-3), (a, key)
    for mine, theirs in zip(model["strategies"], shipped["strategies"]):
        assert mine["aspects"] == theirs["aspects"] and mine["offset_z"] == pytest.approx(theirs["offset_z"], abs=1e-9)
    # the seed SD uses the normal generators' best-of-k factor, not the SD rows' 0.87
    assert shipped["best_of_k_factor"] == pytest.approx(0.9993, abs=1e-3)


def test_text_known_success_matches_a_monte_carlo_of_what_the_text_leaves_unknown():
    qm = QualityModel.default(profile="ratings")
    prompt, s, thr = "A lighthouse on a cliff with crashing waves at dusk", 3, 7.5
    rng = np.random.default_rng(0)
    n_draws = 200_000
    mu = float(qm.mean_score(__import__("sim.model.quality", fromlist=["prompt_complexity"]).prompt_complexity(prompt), s))
    mu += qm.scale * qm.text_effect_z(prompt, s)
    unknown = rng.normal(0, 1, n_draws) * np.hypot(qm.own_effect_sd(s), qm.prompt_sd)
    best = np.max(mu + unknown[:, None] + rng.normal(0, qm.seed_sd, (n_draws, 2)), axis=1)
    assert qm.text_known_success(prompt, s, thr, n=2) == pytest.approx(np.mean(np.clip(best, 0, 10) >= thr), abs=4e-3)
    # the text's part plus the own part is the whole effect: averaged over runs, the own part vanishes
    effects = [qm.strategy_effect_z(prompt, s, key=k) for k in range(600)]
    assert np.mean(effects) == pytest.approx(qm.text_effect_z(prompt, s), abs=4 * qm.own_effect_sd(s) / qm.scale / 24)


def test_the_optimum_prompt_agent_beats_always_6_when_strategies_help_prompts_differently():
    def success(profile, agent, seed):
        sc = parse_scenario({"name": "opt", "seed": seed, "quality": {"profile": profile},
                             "arrivals": {"n_users": 60}, "channel": {"delivery": "statistical"},
                             "users": {"distance_m": {"low": 20.0, "high": 40.0}},
                             "masps": [{"max_users_per_epoch": 60, "p_total_w": 60.0}],
                             "provisioning_agent": {"name": "static", "params": {"n_images": 1}},
                             "prompt_agent": {"name": agent}})
        return World(sc).run().summary["single_round_success"]

    seeds = range(6)
    ratings = {a: np.array([success("ratings", a, s) for s in seeds]) for a in ("empirical", "optimum")}
    gain = ratings["optimum"] - ratings["empirical"]
    assert gain.mean() > 0.015 and (gain > 0).sum() >= 5
    # the classic model has no per-prompt effects: the optimum is about always-6 (1.03x in the world)
    classic = {a: np.array([success("classic", a, s) for s in seeds]) for a in ("empirical", "optimum")}
    assert abs((classic["optimum"] - classic["empirical"]).mean()) < gain.mean()


def test_the_model_expert_follows_what_the_words_tell_under_ratings_only():
    from sim.model.quality import prompt_complexity
    from sim.rl.prompt_expert import ModelExpert

    same_c = [f"A {a} {b} with a {c}" for a in ("red", "old", "tall") for b in ("barn", "tower", "ship")
              for c in ("cat", "flag", "lamp", "kite")]
    assert len({prompt_complexity(p) for p in same_c}) == 1
    ratings = ModelExpert(QualityModel.default(profile="ratings"))
    assert len({ratings.action(p) for p in same_c}) > 1
    classic = ModelExpert(QualityModel.default())
    assert len({classic.action(p) for p in same_c}) == 1
    qm = ratings.quality
    p = same_c[0]
    offsets = [qm.scale * qm.text_effect_z(p, s) for s in range(7)]
    means = [float(qm.expected_best_of_n(prompt_complexity(p), s, 1, offset=offsets[s])) for s in range(7)]
    assert ratings.action(p) == int(np.argmax(means))


def test_a_noisy_judge_widens_every_score_draw_and_probability():
    quiet = QualityModel.default(profile="ratings")
    assert quiet.judge_sd == 0 and quiet.image_sd == quiet.seed_sd
    noisy = QualityModel.default(profile="ratings", judge_sd_z=0.93)
    assert noisy.image_sd == pytest.approx(np.hypot(quiet.seed_sd, 0.93 * quiet.scale))
    draws = noisy.sample_scores("A quiet lake with a wooden pier", 3, np.random.default_rng(0), 40_000)
    inside = draws[(draws > 0) & (draws < 10)]
    assert inside.std() == pytest.approx(noisy.image_sd, rel=0.05)
    # a noisier judge makes a threshold above the mean easier to pass by luck, and one below it harder
    mu = float(quiet.mean_score(0.3, 3))
    assert noisy.prob_best_of_n_at_least(mu + 2, 0.3, 3, 1) > quiet.prob_best_of_n_at_least(mu + 2, 0.3, 3, 1)
    assert noisy.prob_best_of_n_at_least(mu - 2, 0.3, 3, 1) < quiet.prob_best_of_n_at_least(mu - 2, 0.3, 3, 1)
    sc = parse_scenario({"name": "judge", "quality": {"profile": "ratings", "judge_sd_z": 0.93}})
    world = World(sc)
    assert world.quality.judge_sd_z == 0.93 and world.quality.image_sd == pytest.approx(noisy.image_sd)


def test_the_paper_profile_reaches_the_papers_numbers_and_says_it_is_calibrated(tmp_path, load_script):
    import yaml
    from pathlib import Path

    from sim.world.compare import compare, make_arms

    script = load_script("derive_quality_stats")
    shipped = yaml.safe_load((Path(__file__).resolve().parents[1] / "sim" / "data"
                              / "quality_generation_paper.yaml").read_text())
    assert shipped["profile"] == "paper" and shipped["strategy_table"] == "printed"
    qm = QualityModel.default(profile="paper")
    assert qm.anchor == pytest.approx(shipped["calibration"]["anchor"], abs=1e-3)
    got = script.paper_success(qm, script._shipped_prompts())
    for key, target in script.PAPER_TARGETS.items():
        assert got[key] == pytest.approx(target, abs=0.006), key  # raw 3/55, always-6 9/55, optimum 6.3 x 3/55
        assert got[key] == pytest.approx(shipped["calibration"]["achieved"][key], abs=1e-3)
    sc = parse_scenario({"name": "paper_note", "quality": {"profile": "paper"}, "arrivals": {"n_users": 6},
                         "channel": {"delivery": "statistical"}})
    out, _ = compare(sc, make_arms(sc, ["static"], ["raw"]), [0], out=tmp_path / "cmp", workers=1, quiet=True)
    assert "CALIBRATED TO THE PAPER'S RESULTS" in (out / "report.md").read_text()
