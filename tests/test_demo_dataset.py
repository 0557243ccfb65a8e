"""The demonstration dataset D: shape, columns, determinism, channel effects, resumability, backends."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sim.assessment.fidelity import FidelityAssessor
from sim.config import parse_scenario
from sim.dataset.cache_builder import build_cache
from sim.dataset.demonstrations import (
    COLUMNS,
    ROW_KEY,
    build_demo_dataset,
    default_demo_prompts,
    demo_seed,
    partial_path_for,
    prompt_stream_key,
)
from sim.model.quality import prompt_complexity
from sim.prompting.prompts import load_prompts
from sim.prompting.strategies import apply_strategy, default_corpus
from sim.seeding import RandomStreams

POWERS = (0.01, 0.05, 0.25)
N_PROMPTS, N_SEEDS = 4, 2


def scenario(**generator):
    return parse_scenario({"name": "demo-test", "generator": {"image_size": 48, **generator}})


def build(path, **kw):
    args = dict(n_prompts=N_PROMPTS, seeds_per_strategy=N_SEEDS, power_levels_w=POWERS, quiet=True)
    args.update(kw)
    sc = args.pop("scenario", None) or scenario()
    return build_demo_dataset(sc, path, **args)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "D.parquet"
    summary = build(path)
    return path, summary, pd.read_parquet(path)


def test_rows_and_columns(reference):
    path, summary, d = reference
    assert len(d) == N_PROMPTS * 7 * N_SEEDS * len(POWERS) == summary.rows
    assert list(d.columns) == list(COLUMNS)
    assert not d.duplicated(list(ROW_KEY)).any()
    assert sorted(d["strategy"].unique()) == list(range(7))
    assert sorted(d["power_w"].unique()) == list(POWERS)
    assert summary.images == summary.images_generated == N_PROMPTS * 7 * N_SEEDS and summary.images_resumed == 0
    assert (d["generator"] == "surrogate").all() and (d["assessor"] == "fidelity").all()
    assert (d["image_format"] == "jpeg").all() and (d["width"] == 48).all()
    assert np.allclose(d["expected_errors"], d["ber"] * d["n_bits"])
    assert np.allclose(d["snr_db"], d["mean_snr_db"] + d["shadowing_db"])
    assert not partial_path_for(path).exists()
    meta = d.attrs["demo_dataset"]
    assert meta["generator"] == "surrogate" and meta["seeds_per_strategy"] == N_SEEDS and meta["distance_m"] == 100.0


def test_content_follows_the_seams(reference):
    _, _, d = reference
    # surrogate + fidelity: the assessor's score of the intact image is the surrogate's own
    assert np.array_equal(d["generation_score"], d["backend_generation_score"])
    streams = RandomStreams(0)
    for row in d.drop_duplicates(["prompt", "strategy", "seed_index"]).itertuples():
        corpus = default_corpus(row.prompt)
        refined, negative = apply_strategy(row.prompt, row.strategy, corpus)
        assert (row.refined_prompt, row.negative_prompt) == (refined, negative)
        used = json.loads(row.corpus_elements)
        assert all(corpus[a] == v for a, v in used.items()) and len(used) == row.strategy
        assert row.complexity == prompt_complexity(row.prompt)
        assert row.seed == demo_seed(streams, row.prompt, row.strategy, row.seed_index)
    # power rows of one image share the image; channel draws differ per power
    per_image = d.groupby(["prompt", "strategy", "seed_index"])
    assert (per_image["generation_score"].nunique() == 1).all() and (per_image["n_bits"].nunique() == 1).all()
    intact = d["bits_flipped"] == 0
    assert np.array_equal(d.loc[intact, "received_score"], d.loc[intact, "generation_score"])
    assert not d.loc[~d["decodable"], "received_score"].any()


def test_received_falls_with_power(reference):
    _, summary, d = reference
    assert (d["received_score"] <= d["generation_score"] + 1e-12).all()
    by_power = d.groupby("power_w")["received_score"].mean()
    assert list(by_power.index) == list(POWERS)
    assert by_power.is_monotonic_increasing and by_power.iloc[0] < by_power.iloc[-1] - 0.5
    assert d.groupby("power_w")["ber"].median().is_monotonic_decreasing
    assert d["generation_score"].mean() > by_power.iloc[0]
    assert summary.mean_received_score == pytest.approx(by_power.to_dict())


def test_deterministic(reference, tmp_path):
    path, _, d = reference
    build(tmp_path / "again.parquet")
    again = pd.read_parquet(tmp_path / "again.parquet")
    pd.testing.assert_frame_equal(d, again)
    assert again.attrs == d.attrs
    other = build(tmp_path / "other.parquet", seed=1)
    assert other.rows == len(d)
    assert not np.array_equal(pd.read_parquet(tmp_path / "other.parquet")["seed"], d["seed"])


class _Interrupting:
    """The fidelity assessor, but Ctrl-C after ``limit`` assessments."""

    name = "fidelity"

    def __init__(self, limit):
        self.inner = FidelityAssessor()
        self.limit = limit
        self.calls = 0

    def assess(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.limit:
            raise KeyboardInterrupt
        return self.inner.assess(*args, **kwargs)


def test_resume_after_interrupt_equals_uninterrupted(reference, tmp_path):
    path, _, d = reference
    out = tmp_path / "D.parquet"
    # 4 assessments per image at most (intact + 3 powers): the interruption falls in the third prompt
    with pytest.raises(KeyboardInterrupt):
        build(out, assessor=_Interrupting(limit=2 * 7 * N_SEEDS * 4 + 9), checkpoint_every=1)
    partial = partial_path_for(out)
    assert partial.exists() and not out.exists()
    saved = pd.read_parquet(partial)
    assert list(saved.columns) == list(COLUMNS)
    n_images = saved.drop_duplicates(["prompt_index", "strategy", "seed_index"]).shape[0]
    assert 2 * 7 * N_SEEDS <= n_images < N_PROMPTS * 7 * N_SEEDS  # checkpoints kept whole images only
    assert len(saved) == n_images * len(POWERS)
    # other settings must not resume from this partial file
    with pytest.raises(ValueError, match="other settings"):
        build(out, seeds_per_strategy=3)
    summary = build(out)
    assert summary.images_resumed == n_images and summary.images_generated == N_PROMPTS * 7 * N_SEEDS - n_images
    assert not partial.exists()
    resumed = pd.read_parquet(out)
    pd.testing.assert_frame_equal(resumed, d)
    assert out.read_bytes() == path.read_bytes()


def test_default_prompts_spread_over_complexity():
    shipped = load_prompts()
    chosen = default_demo_prompts()
    assert len(chosen) == 32 and len({p.id for p in chosen}) == 32
    cs = [p.complexity for p in chosen]
    assert cs == sorted(cs)
    assert cs[0] == min(p.complexity for p in shipped) and cs[-1] == max(p.complexity for p in shipped)
    assert [p.id for p in default_demo_prompts()] == [p.id for p in chosen]
    assert len(default_demo_prompts(1000)) == len(shipped)
    with pytest.raises(ValueError):
        default_demo_prompts(0)
    assert prompt_stream_key("A Dog  with a colorful collar") == prompt_stream_key("a dog with a colorful collar")


def test_given_prompts_and_bad_input(tmp_path):
    s = build(tmp_path / "p.parquet", prompts=["A dog with a colorful collar", "A tiny robot with a red umbrella"],
              strategies=(0, 6), seeds_per_strategy=1, power_levels_w=(0.1,))
    d = pd.read_parquet(tmp_path / "p.parquet")
    assert s.rows == 4 and d["prompt_id"].drop_duplicates().tolist() == ["animals-01", "prompt-001"]
    for kw, match in (
        (dict(power_levels_w=(0.1, -1.0)), "power_levels_w"),
        (dict(distance_m=0.0), "distance_m"),
        (dict(strategies=(0, 7)), "strategy"),
        (dict(seeds_per_strategy=0), "seeds_per_strategy"),
        (dict(prompts=["A beach with a boat", "a beach  with a boat"]), "twice"),
    ):
        with pytest.raises(ValueError, match=match):
            build(tmp_path / "bad.parquet", **kw)


def test_from_a_cache_equals_from_the_surrogate(reference, tmp_path):
    _, _, d = reference
    prompts = d["prompt"].drop_duplicates().tolist()
    info = build_cache(scenario(), tmp_path / "cache", prompts=prompts, seeds_per_prompt=N_SEEDS, quiet=True)
    assert info["generated"] == N_PROMPTS * 7 * N_SEEDS
    cached = scenario(backend="cache", cache={"dir": str(tmp_path / "cache")})
    build(tmp_path / "c.parquet", scenario=cached)
    c = pd.read_parquet(tmp_path / "c.parquet")
    assert (c["generator"] == "cache").all()
    same = [col for col in COLUMNS if col not in ("generator",)]
    pd.testing.assert_frame_equal(c[same], d[same])


# ---------------------------------------------------------------------------
# statistical delivery and per-seed prompt effects


def test_statistical_d_draws_what_the_bytes_mode_generates_and_damages_by_the_round_rule(reference, tmp_path):
    from sim.backends import build_service_models
    from sim.model.service import delivered

    _, _, ref = reference
    build(tmp_path / "stat.parquet", delivery="statistical")
    stat = pd.read_parquet(tmp_path / "stat.parquet")
    assert list(stat.columns) == list(COLUMNS) and len(stat) == len(ref)
    keys = list(ROW_KEY)
    stat, ref = stat.sort_values(keys).reset_index(drop=True), ref.sort_values(keys).reset_index(drop=True)
    # the same images (the surrogate's own score draws) and the same channel draws
    assert np.array_equal(stat["generation_score"], ref["generation_score"])
    assert np.allclose(stat["shadowing_db"], ref["shadowing_db"]) and np.allclose(stat["ber"], ref["ber"])
    assert (stat["assessor"] == "statistical").all() and stat["damage"].isna().all()
    # the fate follows the world's statistical round rule
    quality = build_service_models(scenario()).quality
    again, _ = delivered(quality, stat["ber"].to_numpy(), stat["generation_score"].to_numpy(),
                                 np.where(stat["decodable"], 1.0, 0.0), int(stat["n_bits"].iloc[0]))
    assert np.allclose(np.where(stat["decodable"], again, 0.0), stat["received_score"])
    assert (stat.loc[~stat["decodable"], "received_score"] == 0).all()
    # received scores fall with power as in the bytes mode
    means = stat.groupby("power_w")["received_score"].mean()
    assert means.iloc[0] < means.iloc[-1]


def test_per_seed_prompt_effects_give_each_seed_its_own_run():
    from sim.dataset.demonstrations import demo_run_key

    streams = RandomStreams(0)
    keys = {demo_run_key(streams, k) for k in range(50)}
    assert len(keys) == 50 and streams.integer_seed("prompt_effect") not in keys


def test_per_seed_d_averages_over_runs(tmp_path):
    """Under a profile with per-prompt strategy effects, one run's D puts every seed of a prompt on the same
    prompt-specific mean; per-seed D draws it again for every seed, in both delivery modes."""
    sc = parse_scenario({"name": "demo-test", "generator": {"image_size": 48}, "quality": {"profile": "ratings"}})
    frames = {}
    for effects in ("run", "per_seed"):
        for mode in ("statistical", "bytes"):
            path = tmp_path / f"{effects}-{mode}.parquet"
            build(path, scenario=sc, seeds_per_strategy=6, n_prompts=2, power_levels_w=(0.25,), delivery=mode,
                  prompt_effects=effects)
            frames[effects, mode] = pd.read_parquet(path).sort_values(list(ROW_KEY)).reset_index(drop=True)
    for effects in ("run", "per_seed"):  # both modes generate the same images
        assert np.array_equal(frames[effects, "statistical"]["generation_score"],
                              frames[effects, "bytes"]["generation_score"])
    run, per_seed = frames["run", "statistical"], frames["per_seed", "statistical"]
    assert not np.array_equal(run["generation_score"], per_seed["generation_score"])
    # the same seeds' noise, other run keys: the difference is the prompt effects, different per seed
    diff = (per_seed["generation_score"] - run["generation_score"]).to_numpy()
    spread = pd.Series(diff).groupby([per_seed["prompt_index"], per_seed["strategy"]]).std()
    assert (spread.dropna() > 0).any()


def test_statistical_d_refuses_a_generator_without_prompt_effects(tmp_path):
    class Plain:
        name = "plain"

    with pytest.raises(ValueError, match="needs the surrogate generator"):
        build(tmp_path / "x.parquet", delivery="statistical", generator=Plain())
    with pytest.raises(ValueError, match="delivery must be one of"):
        build(tmp_path / "x.parquet", delivery="pigeon")
    with pytest.raises(ValueError, match="prompt_effects must be one of"):
        build(tmp_path / "x.parquet", prompt_effects="sometimes")
