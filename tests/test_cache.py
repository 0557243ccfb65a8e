"""The cache generator backend: fill, exact replay, misses, fallback, resumable builds, corrupt files."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from sim.assessment.base import Assessment
from sim.config import CacheConfig, parse_scenario
from sim.dataset.cache_builder import build_cache, fill_cache
from sim.generation.base import GenerationRequest
from sim.generation.cache import (
    MANIFEST,
    CacheError,
    CacheGenerator,
    CacheMiss,
    CacheWriter,
    cache_key,
    read_manifest,
)
from sim.generation.surrogate import SurrogateGenerator
from sim.model.quality import QualityModel
from sim.seeding import RandomStreams
from sim.world.records import ImageRecord, records_frame
from sim.world.simulation import World

PROMPTS = ["A dog with a colorful collar", "A savanna at sunset, with a family of elephants"]


def scenario(**generator):
    return parse_scenario(
        {
            "name": "cache-test",
            "arrivals": {"process": "batch", "n_users": 3},
            "generator": {"image_size": 48, **generator},
            "service": {"max_rounds": 2, "max_images_per_round": 3},
            "provisioning_agent": {"name": "static", "params": {"n_images": 2}},
        }
    )


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    d = tmp_path_factory.mktemp("cache")
    summary = build_cache(scenario(), d, prompts=PROMPTS, strategies=(0, 3, 6), seeds_per_prompt=2, quiet=True)
    return d, summary


def requests_of(entries):
    for e in entries:
        yield GenerationRequest(
            raw_prompt=e["raw_prompt"], prompt=e["prompt"], strategy=e["strategy"], seeds=(e["seed"],),
            negative_prompt=e["negative_prompt"],
        )


def test_fill_from_surrogate_and_manifest_content(filled):
    d, summary = filled
    assert summary["generated"] == 2 * 3 * 2 and summary["skipped"] == 0 and summary["images"] == 12
    assert summary["backend"] == "surrogate" and summary["assessor"] == "fidelity" and summary["scored"] == 12
    lines = (d / MANIFEST).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 12
    entries = [json.loads(line) for line in lines]
    for e in entries:
        for key in ("key", "prompt", "raw_prompt", "negative_prompt", "strategy", "seed", "model", "steps",
                    "backend", "generation_time_s", "time_source", "format", "file", "width", "height",
                    "generation_score", "scores", "sha256"):
            assert key in e, key
        assert e["key"] == cache_key(e["raw_prompt"], e["prompt"], e["negative_prompt"], e["strategy"], e["seed"],
                                     e["format"])
        assert e["format"] == "jpeg" and e["file"].endswith(".jpg") and (d / e["file"]).is_file()
        assert (e["width"], e["height"]) == (48, 48)
        assert e["backend"] == "surrogate" and e["time_source"] == "modelled" and e["generation_time_s"] == 2.0
        assert e["generation_score_source"] == "backend:surrogate"
        # the fidelity assessor on the intact bytes gives the surrogate's own score
        assert e["scores"] == {"fidelity": e["generation_score"]}
        assert hashlib.sha256((d / e["file"]).read_bytes()).hexdigest() == e["sha256"]
        if e["strategy"] == 6:
            assert e["negative_prompt"] and e["prompt"].startswith(e["raw_prompt"] + ", ")
        if e["strategy"] == 0:
            assert e["prompt"] == e["raw_prompt"] and e["negative_prompt"] == ""


def test_exact_replay(filled):
    d, _ = filled
    entries = list(read_manifest(d).values())
    gen = CacheGenerator(CacheConfig(dir=str(d)))
    assert gen.name == "cache" and len(gen) == 12
    # the same surrogate the build used (root seed 0 -> prompt-effect key)
    surrogate = SurrogateGenerator(
        QualityModel.default(image_format="jpeg"), image_size=48, inference_time_s=2.0,
        prompt_effect_key=RandomStreams(0).integer_seed("prompt_effect"),
    )
    for e, req in zip(entries, requests_of(entries)):
        (img,) = gen.generate(req)
        assert img.data == (d / e["file"]).read_bytes()
        (fresh,) = surrogate.generate(req)
        assert img.data == fresh.data and np.array_equal(img.pixels, fresh.pixels)
        assert img.generation_score == e["generation_score"] == fresh.generation_score
        assert (img.seed, img.format, img.time_source, img.generation_time_s) == (e["seed"], "jpeg", "modelled", 2.0)
        assert img.model == (fresh.model or "surrogate")  # no model id recorded: the producing backend
    assert gen.hits == 12
    # several seeds in one request come back in request order
    e0, e1 = [e for e in entries if e["raw_prompt"] == PROMPTS[0] and e["strategy"] == 3]
    req = GenerationRequest(raw_prompt=PROMPTS[0], prompt=e0["prompt"], strategy=3, seeds=(e1["seed"], e0["seed"]),
                            negative_prompt=e0["negative_prompt"])
    assert [im.seed for im in gen.generate(req)] == [e1["seed"], e0["seed"]]


def test_miss_is_a_clear_error(filled, tmp_path):
    d, _ = filled
    gen = CacheGenerator(CacheConfig(dir=str(d)))
    req = GenerationRequest(raw_prompt="A beach with a boat", prompt="A beach with a boat", strategy=2, seeds=(99, 98))
    with pytest.raises(CacheMiss) as info:
        gen.generate(req)
    msg = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in msg
    for part in ("A beach with a boat", "strategy 2", "seed 99", str(d), "python -m sim cache build", "1 more seed"):
        assert part in msg, part
    with pytest.raises(CacheError, match="does not exist"):
        CacheGenerator(CacheConfig(dir=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="fallback"):
        CacheGenerator(CacheConfig(dir=str(tmp_path), on_miss="fallback"), fallback=None)


def test_fallback_fills_then_hits(tmp_path):
    fallback = SurrogateGenerator(image_size=40, prompt_effect_key=3)
    gen = CacheGenerator(CacheConfig(dir=str(tmp_path), on_miss="fallback"), fallback=fallback)
    req = GenerationRequest(raw_prompt=PROMPTS[1], prompt=PROMPTS[1] + ", refined", strategy=1, seeds=(5, 6, 5))
    first = gen.generate(req)
    assert gen.stored == 2 and len(read_manifest(tmp_path)) == 2  # duplicate seed stored once
    replay = CacheGenerator(CacheConfig(dir=str(tmp_path)))
    again = replay.generate(req)
    assert replay.hits == 3
    assert [a.data for a in first] == [b.data for b in again]
    assert [a.generation_score for a in first] == [b.generation_score for b in again]
    # a mixed request: hits replayed, the miss generated and stored
    gen2 = CacheGenerator(CacheConfig(dir=str(tmp_path), on_miss="fallback"), fallback=fallback)
    mixed = gen2.generate(dataclasses.replace(req, seeds=(6, 7)))
    assert (gen2.hits, gen2.stored) == (1, 1) and [m.seed for m in mixed] == [6, 7]
    assert not list(tmp_path.rglob("*.tmp"))  # no temporary files left behind


def test_world_runs_on_the_cache_and_replays_identically(tmp_path):
    d = tmp_path / "c"
    fill = scenario(backend="cache", cache={"dir": str(d), "on_miss": "fallback"})
    first = World(fill, seed=4).run()
    assert (d / MANIFEST).is_file() and len(read_manifest(d)) == len(first.images)
    replay = scenario(backend="cache", cache={"dir": str(d), "on_miss": "error"})
    world = World(replay, seed=4)
    second = world.run()
    assert world.generator.hits == len(second.images)
    pd.testing.assert_frame_equal(records_frame(first.images, ImageRecord), records_frame(second.images, ImageRecord))
    # and both equal the plain surrogate world
    plain = World(scenario(), seed=4).run()
    pd.testing.assert_frame_equal(records_frame(plain.images, ImageRecord), records_frame(second.images, ImageRecord))


def test_build_is_resumable(tmp_path):
    sc = scenario()
    a = build_cache(sc, tmp_path, prompts=PROMPTS[:1], strategies=(0, 6), seeds_per_prompt=2, quiet=True)
    assert (a["generated"], a["skipped"]) == (4, 0)
    b = build_cache(sc, tmp_path, prompts=PROMPTS[:1], strategies=(0, 6), seeds_per_prompt=3, quiet=True)
    assert (b["generated"], b["skipped"], b["images"]) == (2, 4, 6)
    c = build_cache(sc, tmp_path, prompts=PROMPTS[:1], strategies=(0, 6), seeds_per_prompt=3, quiet=True)
    assert (c["generated"], c["skipped"]) == (0, 6)
    assert len((tmp_path / MANIFEST).read_text().splitlines()) == 6
    with pytest.raises(ValueError, match="cache backend"):
        build_cache(sc, tmp_path, prompts=PROMPTS[:1], backend="cache", quiet=True)


def test_corrupt_manifest_line_is_named(filled, tmp_path):
    d, _ = filled
    lines = (d / MANIFEST).read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / MANIFEST).write_text("\n".join(lines[:2] + ['{"key": "abc", "prompt": '] + lines[2:]) + "\n")
    with pytest.raises(CacheError, match=r"manifest\.jsonl, line 3: not valid JSON") as info:
        CacheGenerator(CacheConfig(dir=str(bad)))
    assert "\n" not in str(info.value)
    (bad / MANIFEST).write_text(lines[0] + "\n" + json.dumps({"key": "x"}) + "\n")
    with pytest.raises(CacheError, match="line 2: missing key"):
        read_manifest(bad)


def test_altered_image_file_is_detected(tmp_path):
    build_cache(scenario(), tmp_path, prompts=PROMPTS[:1], strategies=(0,), seeds_per_prompt=1, quiet=True)
    (entry,) = read_manifest(tmp_path).values()
    path = tmp_path / entry["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    gen = CacheGenerator(CacheConfig(dir=str(tmp_path)))
    with pytest.raises(CacheError, match="SHA-256"):
        gen.generate(next(requests_of([entry])))
    path.unlink()
    with pytest.raises(CacheError, match="missing"):
        gen.generate(next(requests_of([entry])))


class _NoScoreGenerator:
    """A stand-in for a real model: images without a generation score, measured time, a model id."""

    name = "fake-real"
    image_format = "png"
    steps = 7

    def __init__(self):
        self.inner = SurrogateGenerator(image_size=32, image_format="png")

    def generate(self, request):
        return [
            dataclasses.replace(im, generation_score=None, time_source="measured", model="tiny/model",
                                generation_time_s=0.25)
            for im in self.inner.generate(request)
        ]


class _ConstAssessor:
    name = "const"

    def assess(self, sent, received, prompt, user_id=None):
        return Assessment(score=6.5, decodable=True, damage=0.0, assessor=self.name)


def test_assessor_score_becomes_generation_score_for_real_backends(tmp_path):
    writer = CacheWriter(tmp_path)
    req = GenerationRequest(raw_prompt=PROMPTS[0], prompt=PROMPTS[0], strategy=0, seeds=(1, 2))
    counts = fill_cache(_NoScoreGenerator(), writer, [req], assessor=_ConstAssessor())
    assert counts == {"generated": 2, "skipped": 0, "scored": 2, "score_failures": 0}
    for e in read_manifest(tmp_path).values():
        assert e["generation_score"] == 6.5 and e["generation_score_source"] == "assessor:const"
        assert (e["backend"], e["model"], e["steps"], e["time_source"], e["format"]) == (
            "fake-real", "tiny/model", 7, "measured", "png")
    (img,) = CacheGenerator(CacheConfig(dir=str(tmp_path))).generate(dataclasses.replace(req, seeds=(2,)))
    assert (img.generation_score, img.time_source, img.model, img.generation_time_s) == (6.5, "measured",
                                                                                         "tiny/model", 0.25)
    # the fidelity assessor cannot score images without a generation score: one clear error
    from sim.assessment.fidelity import FidelityAssessor

    with pytest.raises(ValueError, match="cannot score fake-real images with the fidelity assessor"):
        fill_cache(_NoScoreGenerator(), CacheWriter(tmp_path / "x"), [req], assessor=FidelityAssessor())
