"""The surrogate generator, the fidelity assessor, and the shipped damage fit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from sim.assessment.base import Assessor
from sim.assessment.fidelity import (
    FidelityAssessor,
    _local_ssim,
    damage_trials,
    luma,
    retention_of_ssim,
    ssim,
)
from sim.generation.base import GeneratedImage, GenerationRequest, Generator
from sim.generation.render import FORMATS, decode_image
from sim.generation.surrogate import Picture, SurrogateGenerator, render_encoded
from sim.model.channel import flip_bits
from sim.model.quality import DamageParams, QualityModel, prompt_complexity
from sim.prompting.prompts import load_prompts

ROOT = Path(__file__).resolve().parents[1]
DAMAGE_YAML = ROOT / "sim" / "data" / "quality_damage.yaml"
PROMPT = "A dog with a colorful collar"


@pytest.fixture(scope="module")
def qm() -> QualityModel:
    return QualityModel.default()


@pytest.fixture(scope="module")
def gen(qm) -> SurrogateGenerator:
    return SurrogateGenerator(qm, image_size=128, inference_time_s=3.5, prompt_effect_key=11)


def request(seeds, strategy=2, prompt=PROMPT) -> GenerationRequest:
    return GenerationRequest(raw_prompt=prompt, prompt=prompt + ", refined", strategy=strategy, seeds=tuple(seeds))


def test_protocols(gen):
    assert isinstance(gen.name, str) and gen.name == "surrogate"
    assert FidelityAssessor.name == "fidelity"
    _: Generator = gen
    _a: Assessor = FidelityAssessor()


def test_generate_one_image_per_seed_in_order(gen):
    seeds = (42, 7, 1000, 3)
    images = gen.generate(request(seeds))
    assert [im.seed for im in images] == list(seeds)
    for im in images:
        assert im.format == "jpeg" and im.data[:2] == b"\xff\xd8"
        assert im.pixels.shape == (128, 128, 3) and im.pixels.dtype == np.uint8
        assert im.generation_time_s == 3.5
        assert 0.0 <= im.generation_score <= 10.0
        assert im.n_bits == 8 * len(im.data)
        # pixels are what an error-free link delivers
        assert np.array_equal(decode_image(im.data, "jpeg", im.pixels.shape), im.pixels)
    assert gen.generate(request(())) == []


def test_generate_is_deterministic(gen, qm):
    a = gen.generate(request((5, 6)))
    b = SurrogateGenerator(qm, image_size=128, inference_time_s=3.5, prompt_effect_key=11).generate(request((5, 6)))
    for x, y in zip(a, b):
        assert x.data == y.data and x.generation_score == y.generation_score
        assert np.array_equal(x.pixels, y.pixels)


def test_scores_follow_the_quality_model(gen, qm):
    for seed in (0, 1, 99):
        for strategy in (0, 6):
            (im,) = gen.generate(request((seed,), strategy))
            expected = qm.sample_scores(PROMPT, strategy, np.random.default_rng(seed), n=1, key=11)[0]
            assert im.generation_score == pytest.approx(float(expected), abs=0)
    # averaged over seeds, the scores track the model's mean per strategy
    seeds = range(400)
    for strategy in (0, 6):
        mean = np.mean([gen.generation_score(PROMPT, strategy, s) for s in seeds])
        # the model's mean of one clipped score for this prompt, strategy and key
        target = qm.expected_best_of_n(prompt_complexity(PROMPT), strategy, 1, offset=qm.prompt_offset(PROMPT, key=11))
        assert mean == pytest.approx(float(target), abs=3 * qm.seed_sd / math.sqrt(len(seeds)) + 0.02)
    # the prompt-effect key changes the per-prompt offset, hence the scores
    other = SurrogateGenerator(qm, image_size=128, prompt_effect_key=12)
    if qm.prompt_sd > 0:
        assert other.generation_score(PROMPT, 0, 1) != gen.generation_score(PROMPT, 0, 1)


def test_bad_constructor_and_requests(qm):
    with pytest.raises(ValueError, match="image_format"):
        SurrogateGenerator(qm, image_format="gif")
    with pytest.raises(ValueError, match="jpeg_quality"):
        SurrogateGenerator(qm, jpeg_quality=0)
    with pytest.raises(ValueError, match="inference_time_s"):
        SurrogateGenerator(qm, inference_time_s=-1)
    with pytest.raises(ValueError, match="prompt_effect_key"):
        SurrogateGenerator(qm, prompt_effect_key=-2)
    g = SurrogateGenerator(qm, image_size=32)
    with pytest.raises(ValueError, match="seeds"):
        g.generate(request((-1,)))
    with pytest.raises(ValueError, match="strategy"):
        g.generate(request((1,), strategy=9))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips_through_the_assessor(qm, fmt):
    (im,) = SurrogateGenerator(qm, image_size=64, image_format=fmt).generate(request((3,)))
    verdict = FidelityAssessor().assess(im, im.data, PROMPT)
    assert verdict.decodable and verdict.damage == 0.0
    assert verdict.score == pytest.approx(im.generation_score)
    # decoding the same bytes (not the fast path) also gives no damage
    copy = bytearray(im.data)
    v2 = FidelityAssessor().assess(im, bytes(copy), PROMPT)
    assert v2.score == pytest.approx(im.generation_score)


def test_undecodable_scores_zero_and_is_recorded(gen):
    (im,) = gen.generate(request((1,)))
    verdict = FidelityAssessor().assess(im, b"\x00" * len(im.data), PROMPT)
    assert verdict.score == 0.0 and not verdict.decodable and math.isnan(verdict.damage)
    assert verdict.detail.startswith("undecodable")
    truncated = FidelityAssessor().assess(im, im.data[:50], PROMPT)
    assert truncated.score == 0.0 and not truncated.decodable


def test_damaged_image_loses_score_and_gamma_matters(gen):
    (im,) = gen.generate(request((2,)))
    rng = np.random.default_rng(0)
    for _ in range(20):
        received, n = flip_bits(im.data, 3e-4, rng)
        soft = FidelityAssessor(1.0).assess(im, received, PROMPT)
        hard = FidelityAssessor(3.0).assess(im, received, PROMPT)
        if n and soft.decodable and soft.damage > 0.01:
            assert soft.score < im.generation_score
            assert hard.score < soft.score
            assert 0 < soft.damage <= 2
            return
    pytest.fail("no damaged-but-decodable image in 20 tries")


def test_assessor_needs_generation_score():
    px = np.zeros((16, 16, 3), np.uint8)
    real = GeneratedImage(b"x", "raw", px, seed=0, generation_time_s=1.0, generation_score=None)
    with pytest.raises(TypeError, match="surrogate or cache"):
        FidelityAssessor().assess(real, b"x", PROMPT)
    with pytest.raises(ValueError, match="ssim_gamma"):
        FidelityAssessor(ssim_gamma=0)


def test_ssim_is_skimage_on_luma():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    b = np.clip(a + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    expected = structural_similarity(luma(a), luma(b), data_range=255.0)
    assert ssim(a, b) == pytest.approx(expected)
    assert ssim(a, a) == pytest.approx(1.0)
    assert retention_of_ssim(0.9, 2.0) == pytest.approx(0.81)


def test_ssim_of_a_few_damaged_bands_equals_the_whole_image_computation():
    """Only rows near differing rows are computed; the mean is scikit-image's over the whole image."""
    rng = np.random.default_rng(8)
    data, pixels = render_encoded(PROMPT, 4, 256)
    banded = 0
    for trial in range(40):
        received, flipped = flip_bits(data, 3e-5, rng)
        decoded = decode_image(received, "jpeg", pixels.shape)
        if decoded is None or flipped == 0:
            continue
        rows = np.flatnonzero((luma(decoded) != luma(pixels)).any(axis=1))
        banded += rows.size and rows.size < 100
        expected = structural_similarity(luma(pixels), luma(decoded), data_range=255.0)
        assert ssim(pixels, decoded) == pytest.approx(expected, abs=1e-6)
    assert banded >= 5  # the banded path ran, not only the whole-image fallback
    # hand-made bands: at the top edge, the bottom edge and two apart in the middle
    a = rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)
    for rows in ([0, 1], [95], [30, 31, 60], [3, 50, 93]):
        b = a.copy()
        b[rows] = rng.integers(0, 256, (len(rows), 80, 3), dtype=np.uint8)
        expected = structural_similarity(luma(a), luma(b), data_range=255.0)
        assert ssim(a, b) == pytest.approx(expected, abs=1e-6), rows
    # most rows damaged: the whole image in one pass, scikit-image's mean bit for bit
    b = a.copy()
    b[::2] = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    assert ssim(a, b) == float(structural_similarity(luma(a), luma(b), data_range=255.0))


def test_score_falls_as_ber_rises(gen):
    images = gen.generate(request(range(4), prompt="A misty mountain village at dawn, with a red wooden bridge"))
    trials = damage_trials(images, [1e-6, 1e-4, 5e-4, 3e-3], repeats=3, rng=np.random.default_rng(5))
    means = [trials.ratio[np.isclose(trials.ber, b)].mean() for b in (1e-6, 1e-4, 5e-4, 3e-3)]
    assert means[0] > 0.95
    assert means[0] >= means[1] > means[2] > means[3]
    assert means[3] < 0.3
    assert np.all(trials.errors == trials.ber * trials.n_bits)
    assert np.all(trials.ratio[~trials.decodable] == 0)


# --- the shipped damage fit ------------------------------------------------------------------


def test_damage_yaml_has_one_set_per_format():
    for fmt in FORMATS:
        p = DamageParams.from_yaml(DAMAGE_YAML, fmt)
        assert p.e50 > 0 and p.k > 0 and p.undecodable_per_error >= 0
    assert DamageParams.from_yaml(DAMAGE_YAML) == DamageParams.from_yaml(DAMAGE_YAML, "jpeg")
    text = DAMAGE_YAML.read_text()
    assert "scripts/fit_damage_model.py" in text and "RMSE" in text


@pytest.mark.parametrize(("fmt", "bers"), [("jpeg", (5e-5, 2.5e-4, 1e-3)), ("raw", (1e-3, 5e-3))])
def test_damage_yaml_agrees_with_a_fresh_monte_carlo(fmt, bers):
    params = DamageParams.from_yaml(DAMAGE_YAML, fmt)
    # 12 prompts the fit did not use (it used every other one), spread over the complexity range
    # (the damage at a given error count depends somewhat on the image's detail), and new seeds.
    unused = sorted(load_prompts()[1::2], key=lambda p: p.complexity)
    prompts = [unused[i] for i in np.linspace(0, len(unused) - 1, 12).astype(int)]
    images = []
    for i, p in enumerate(prompts):
        data, pixels = render_encoded(p.text, 1000 + i, 256, fmt, 85, p.complexity)
        images.append(GeneratedImage(data, fmt, pixels, seed=1000 + i, generation_time_s=0.0, generation_score=10.0))
    trials = damage_trials(images, bers, repeats=3, rng=np.random.default_rng(77))
    for ber in bers:
        sel = np.isclose(trials.ber, ber)
        dec = sel & trials.decodable
        e = trials.errors
        share_fit = ((1 - params.p_undecodable_of_errors(e)) * params.retention_of_errors(e))[sel].mean()
        assert trials.ratio[sel].mean() == pytest.approx(share_fit, abs=0.12), (fmt, ber)
        assert (~trials.decodable[sel]).mean() == pytest.approx(params.p_undecodable_of_errors(e)[sel].mean(), abs=0.2)
        if dec.sum() >= 5:
            assert trials.ratio[dec].mean() == pytest.approx(params.retention_of_errors(e)[dec].mean(), abs=0.12)


def test_png_damage_set_says_any_error_breaks_it():
    p = DamageParams.from_yaml(DAMAGE_YAML, "png")
    assert p.undecodable_per_error == pytest.approx(1.0, abs=0.15)
    assert float(p.retention_of_errors(100.0)) > 0.999


@pytest.mark.parametrize("fmt", FORMATS)
def test_surrogate_pixels_are_those_of_render_encoded_and_jpeg_ones_decoded_when_read(qm, fmt):
    """A JPEG's pixels (the decoded JPEG) are decoded the first time they are read: an intact image is scored
    without them; a damaged one decodes them, and they are render_encoded's, read-only."""
    gen = SurrogateGenerator(qm, image_size=64, image_format=fmt)
    prompt = "A lighthouse on a cliff at dusk, waves breaking below"
    image = gen.generate(GenerationRequest(raw_prompt=prompt, prompt=prompt, strategy=2, seeds=(11,)))[0]
    data, pixels = render_encoded(prompt, 11, 64, fmt)
    assert image.data == data
    assessor = FidelityAssessor()
    assert assessor.assess(image, image.data, prompt).score == image.generation_score
    assert isinstance(image.__dict__["_pixels"]._pixels, tuple) == (fmt == "jpeg")  # still not decoded
    damaged = bytearray(image.data)
    damaged[len(damaged) // 2] ^= 0x10
    assessor.assess(image, bytes(damaged), prompt)
    assert np.array_equal(image.pixels, pixels) and not image.pixels.flags.writeable
    assert image.pixels is image.pixels  # decoded once
    with pytest.raises(AttributeError):
        image.pixels = pixels


def test_local_ssim_is_scikit_images_map_bit_for_bit():
    """The slab's local SSIM at the rows and columns wanted: the same bits as scikit-image's full map there."""
    rng = np.random.default_rng(21)
    for height, width, lo, hi in ((28, 256, 6, 22), (40, 64, 3, 37), (13, 20, 3, 10), (19, 33, 0, 19)):
        a = luma(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        b = a.copy()
        b[rng.integers(0, height)] += rng.normal(0, 30, width).astype(np.float32)
        _, full = structural_similarity(a, b, data_range=255.0, win_size=7, full=True)
        assert np.array_equal(_local_ssim(a, b, 7, lo, hi), full[lo:hi, 3:width - 3])


def test_k_pictures_per_prompt_share_bytes_by_seed_mod_k_and_keep_each_seeds_score(qm):
    free = SurrogateGenerator(qm, image_size=48)
    gen = SurrogateGenerator(qm, image_size=48, pictures_per_prompt=3)
    seeds = (5, 8, 6, 11, 2)  # 5, 8, 11 and 2 are 2 mod 3
    images = gen.generate(request(seeds))
    by_seed = {im.seed: im for im in images}
    assert by_seed[5].data == by_seed[8].data == by_seed[11].data == by_seed[2].data != by_seed[6].data
    assert by_seed[5].__dict__["_pixels"] is by_seed[8].__dict__["_pixels"]  # one picture, decoded once for all
    data, pixels = render_encoded(PROMPT, 2, 48)
    assert by_seed[8].data == data and np.array_equal(by_seed[8].pixels, pixels)
    # the scores are each seed's own, as with a picture per seed
    assert [im.generation_score for im in images] == [im.generation_score for im in free.generate(request(seeds))]
    assert len({im.generation_score for im in images}) == len(seeds)
    assert gen.generate(request(seeds))[0].data == images[0].data  # kept: the same bytes again


def test_the_kept_pictures_are_bounded_most_recently_used_first(qm):
    gen = SurrogateGenerator(qm, image_size=32, pictures_per_prompt=4)
    gen._max_pictures = 2
    first = gen.picture(PROMPT, 0)
    gen.picture(PROMPT, 1)
    assert gen.picture(PROMPT, 4) is first  # used again: now the most recent
    gen.picture(PROMPT, 2)  # evicts picture 1, the least recently used
    assert set(gen._pictures) == {(PROMPT, 0), (PROMPT, 2)}
    assert isinstance(first, Picture) and gen.picture(PROMPT, 5).data == render_encoded(PROMPT, 1, 32)[0]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_pictures_per_prompt_must_be_a_positive_integer(qm, bad):
    with pytest.raises(ValueError, match="pictures_per_prompt"):
        SurrogateGenerator(qm, pictures_per_prompt=bad)
