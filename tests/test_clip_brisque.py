"""The clip assessor (on a tiny CLIP built from configs) and the brisque assessor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from sim.config import ClipConfig
from sim.generation.base import GeneratedImage
from sim.generation.render import encode_image, render_image
from sim.generation.surrogate import render_encoded
from sim.models.hub import ModelLoadError

PROMPT = "A garden with a fountain"


def sent_image(seed=1, size=64, fmt="jpeg", prompt=PROMPT) -> GeneratedImage:
    data, pixels = render_encoded(prompt, seed, size, fmt, 85, 0.8)
    return GeneratedImage(data=data, format=fmt, pixels=pixels, seed=seed, generation_time_s=1.0)


def damaged(image: GeneratedImage) -> bytes:
    """The image's bytes with the entropy-coded data garbled but still decodable (JPEG)."""
    data = bytearray(image.data)
    start = len(data) // 2
    for k in range(start, start + 40, 4):
        data[k] ^= 0x5A
    return bytes(data)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs torch on one thread (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def clip(tiny_models):
    from sim.assessment.clip import ClipAssessor

    return ClipAssessor(ClipConfig(model=str(tiny_models["clip"])))


# --- clip ----------------------------------------------------------------------------------


def test_clip_scores_in_range_and_deterministic(clip):
    assert clip.name == "clip" and clip.device in ("cpu", "cuda")
    im = sent_image()
    a = clip.assess(im, im.data, PROMPT)
    b = clip.assess(im, im.data, PROMPT, user_id=3)
    assert 0.0 <= a.score <= 10.0 and a == b
    assert a.decodable and a.damage == 0.0 and a.assessor == "clip" and not a.failed
    assert "cos=" in a.detail and "clip_score=" in a.detail


def test_clip_score_depends_on_prompt(clip):
    im = sent_image()
    prompts = [PROMPT, "a red sports car on a wet street at night", "portrait of an old fisherman", "x"]
    cos = [float(clip.cosines([im.pixels], p)[0]) for p in prompts]
    assert len({round(c, 6) for c in cos}) == len(prompts)  # the text tower sees the prompt
    # the 0-10 score is the documented map of the cosine, and it differs between prompts
    scores = [clip.assess(im, im.data, p).score for p in prompts]
    for score, c in zip(scores, cos):
        expected = min(max(10 * (max(c, 0) - clip.cos_low) / (clip.cos_high - clip.cos_low), 0), 10)
        assert score == pytest.approx(expected)
    assert len({round(s, 6) for s in scores}) > 1


def test_clip_looks_at_the_received_image(clip):
    im = sent_image()
    bad = damaged(im)
    v = clip.assess(im, bad, PROMPT)
    assert v.decodable and v.damage > 0.01
    assert float(clip.cosines([im.pixels], PROMPT)[0]) != pytest.approx(float(v.detail.split("cos=")[1].split()[0]), abs=1e-6)


def test_clip_undecodable(clip):
    im = sent_image()
    for junk in (b"", b"not an image", im.data[:20]):
        v = clip.assess(im, junk, PROMPT)
        assert v.score == 0.0 and not v.decodable and math.isnan(v.damage) and v.detail.startswith("undecodable")
    png = sent_image(fmt="png")
    corrupt = bytearray(png.data)
    corrupt[60] ^= 1  # PNG chunk CRC no longer matches
    assert not clip.assess(png, bytes(corrupt), PROMPT).decodable


def test_clip_batch_matches_single(clip):
    ims = [sent_image(seed=s) for s in (1, 2, 3)]
    received = [ims[0].data, b"junk", damaged(ims[2])]
    many = clip.assess_many(ims, received, PROMPT)
    single = [clip.assess(i, r, PROMPT) for i, r in zip(ims, received)]
    assert [v.decodable for v in many] == [True, False, True]
    for m, s in zip(many, single):
        assert m.score == pytest.approx(s.score, abs=1e-5) and m.decodable == s.decodable


def test_clip_long_prompt_truncated(clip):
    im = sent_image()
    v = clip.assess(im, im.data, ", ".join(["a fountain in a sunny garden with roses"] * 30))
    assert 0.0 <= v.score <= 10.0


def test_clip_mapping_parameters(tiny_models):
    from sim.assessment.clip import ClipAssessor, clip_score, score_of_cosine

    assert score_of_cosine(0.15) == 0.0 and score_of_cosine(0.35) == 10.0 and score_of_cosine(0.25) == pytest.approx(5)
    assert clip_score(0.31) == pytest.approx(31.0) and clip_score(-0.2) == 0.0
    with pytest.raises(ValueError, match="cos_low < cos_high"):
        ClipAssessor(ClipConfig(model=str(tiny_models["clip"])), cos_low=0.4, cos_high=0.3)


def test_clip_missing_model(tmp_path, tiny_models):
    from sim.assessment.clip import ClipAssessor

    with pytest.raises(ModelLoadError) as info:
        ClipAssessor(ClipConfig(model=str(tmp_path / "nope")))
    assert "does not exist" in str(info.value) and info.value.__cause__ is None
    with pytest.raises(ModelLoadError, match="CLIP model") as info:
        ClipAssessor(ClipConfig(model=str(tiny_models["sd"])))  # a directory, but not a CLIP model
    assert "\n" not in str(info.value)


# --- brisque -------------------------------------------------------------------------------


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([gaussian_filter(img[..., c].astype(float), sigma) for c in range(3)], -1).round().astype(np.uint8)


def _noise(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0.0, sigma, img.shape), 0, 255).astype(np.uint8)


def _as_sent(pixels: np.ndarray) -> GeneratedImage:
    return GeneratedImage(data=encode_image(pixels, "png"), format="png", pixels=pixels, seed=0, generation_time_s=1.0)


@pytest.fixture(scope="module")
def brisque():
    pytest.importorskip("cv2")
    pytest.importorskip("brisque")
    from sim.assessment.brisque import BrisqueAssessor

    return BrisqueAssessor()


@pytest.mark.parametrize("seed", [0, 3])
def test_brisque_prefers_sharp_clean_images(brisque, seed):
    sharp = render_image(PROMPT, seed, 64, complexity=0.8)
    scores = {}
    for name, px in (("sharp", sharp), ("noisy", _noise(sharp, 50.0, seed)), ("blurred", _blur(sharp, 3.0))):
        im = _as_sent(px)
        v = brisque.assess(im, im.data, PROMPT)
        assert v.decodable and v.damage == 0.0 and v.assessor == "brisque" and not v.failed
        assert 0.0 <= v.score <= 10.0 and v.detail.startswith("brisque=")
        scores[name] = v.score
    assert scores["sharp"] > scores["noisy"] + 0.5
    assert scores["sharp"] > scores["blurred"] + 0.5


def test_brisque_undecodable_and_damaged(brisque):
    im = sent_image()
    v = brisque.assess(im, b"\x00" * 50, PROMPT)
    assert v.score == 0.0 and not v.decodable and math.isnan(v.damage)
    v = brisque.assess(im, damaged(im), PROMPT)
    assert v.decodable and v.damage > 0.01 and 0.0 <= v.score <= 10.0
    assert brisque.assess(im, im.data, PROMPT) == brisque.assess(im, im.data, "another prompt")  # no-reference


def test_brisque_mapping_and_edge_cases(brisque):
    from sim.assessment.brisque import MIN_SIDE, brisque_value, score_of_brisque

    assert score_of_brisque(0) == 10.0 and score_of_brisque(50) == 5.0 and score_of_brisque(130) == 0.0
    flat = _as_sent(np.full((64, 64, 3), 128, np.uint8))
    v = brisque.assess(flat, flat.data, PROMPT)
    assert v.score == 0.0 and v.failed and v.decodable and "undefined" in v.detail
    small = _as_sent(render_image(PROMPT, 1, 16, complexity=0.8))
    v = brisque.assess(small, small.data, PROMPT)
    assert 0.0 <= v.score <= 10.0 and f"upscaled to {MIN_SIDE} px" in v.detail
    value, upscaled = brisque_value(render_image(PROMPT, 1, 64, complexity=0.8))
    assert math.isfinite(value) and not upscaled
    with pytest.raises(ValueError, match="uint8"):
        brisque_value(np.zeros((64, 64, 3), np.float32))
