"""The diffusers generator on a tiny Stable Diffusion pipeline built from configs (no download)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from sim.config import DiffusersConfig
from sim.generation.base import GeneratedImage, GenerationRequest
from sim.generation.render import decode_image
from sim.models.hub import ModelLoadError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside diffusers

PROMPT = "A dog with a colorful collar"
SIZE = 32  # latents 4 x 4: fast; the tiny UNet is fully convolutional


def make(tiny_models, size=SIZE, fmt="jpeg", inference_time_s=2.5, **cfg):
    from sim.generation.diffusers_backend import DiffusersGenerator

    cfg.setdefault("model", str(tiny_models["sd"]))
    cfg.setdefault("steps", 3)
    return DiffusersGenerator(
        DiffusersConfig(**cfg), image_size=size, image_format=fmt, jpeg_quality=85, inference_time_s=inference_time_s
    )


def request(seeds, negative="", prompt=PROMPT) -> GenerationRequest:
    return GenerationRequest(raw_prompt=prompt, prompt=prompt + ", golden hour", strategy=4, seeds=tuple(seeds),
                             negative_prompt=negative)


class Spy:
    """Wraps a pipeline and records the keyword arguments of each call."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.calls: list[dict] = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return self.pipe(**kwargs)

    def __getattr__(self, name):
        return getattr(self.pipe, name)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs torch on one thread (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def gen(tiny_models):
    return make(tiny_models)


def test_real_clip_tokenizer(tiny_models):
    from transformers import CLIPTokenizer

    for where in (tiny_models["sd"] / "tokenizer", tiny_models["clip"]):
        tok = CLIPTokenizer.from_pretrained(str(where), local_files_only=True)
        assert tok("a photo of a dog").input_ids == [49406, 320, 1125, 539, 320, 1929, 49407]
        assert len(tok) == 49408 and tok.model_max_length == 77


def test_tiny_pipeline_layout(tiny_models):
    index = json.loads((tiny_models["sd"] / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None] and index["feature_extractor"] == [None, None]
    assert json.loads((tiny_models["sd"] / "text_encoder" / "config.json").read_text())["vocab_size"] == 49408


def test_batch_of_n_in_one_call(gen):
    assert gen.name == "diffusers" and callable(gen.generate)
    spy = Spy(gen.pipeline)
    gen.pipeline = spy
    try:
        images = gen.generate(request([5, 1, 9]))
    finally:
        gen.pipeline = spy.pipe
    assert len(spy.calls) == 1
    call = spy.calls[0]
    assert call["prompt"] == [PROMPT + ", golden hour"] * 3
    assert len(call["generator"]) == 3 and call["num_inference_steps"] == 3
    assert call["height"] == call["width"] == SIZE and call["guidance_scale"] == 7.5
    assert [im.seed for im in images] == [5, 1, 9]
    for im in images:
        assert isinstance(im, GeneratedImage)
        assert im.format == "jpeg" and im.pixels.shape == (SIZE, SIZE, 3) and im.pixels.dtype == np.uint8
        assert im.generation_score is None and im.model == str(gen.config.model)
        assert im.time_source == "measured" and im.generation_time_s > 0
    assert gen.generate(request([])) == []


def test_deterministic_per_seed(gen):
    a = gen.generate(request([3, 4]))
    b = gen.generate(request([3, 4]))
    assert [im.data for im in a] == [im.data for im in b]
    assert not np.array_equal(a[0].pixels, a[1].pixels)  # different seeds, different images
    assert a[0].pixels.std() > 1.0  # a picture, not a constant


def test_bytes_decode_to_recorded_pixels(tiny_models, gen):
    for fmt in ("jpeg", "png", "raw"):
        g = gen if fmt == "jpeg" else make(tiny_models, fmt=fmt, steps=2)
        for im in g.generate(request([0, 1])):
            assert im.format == fmt
            assert np.array_equal(decode_image(im.data, fmt, im.pixels.shape), im.pixels)
            assert not im.pixels.flags.writeable


def test_negative_prompt(tiny_models, gen):
    spy = Spy(gen.pipeline)
    gen.pipeline = spy
    try:
        a = gen.generate(request([7, 8], negative="blurry, low quality"))
        b = gen.generate(request([7, 8]))
    finally:
        gen.pipeline = spy.pipe
    assert spy.calls[0]["negative_prompt"] == ["blurry, low quality"] * 2
    assert spy.calls[1]["negative_prompt"] is None
    assert not np.array_equal(a[0].pixels, b[0].pixels)  # the negative prompt reached the model

    without = make(tiny_models, use_negative_prompt=False)
    spy = Spy(without.pipeline)
    without.pipeline = spy
    c = without.generate(request([7, 8], negative="blurry, low quality"))
    assert spy.calls[0]["negative_prompt"] is None
    assert [im.data for im in c] == [im.data for im in b]


def test_time_source(tiny_models, gen):
    modelled = make(tiny_models, steps=1, time_source="modelled", inference_time_s=4.25)
    images = modelled.generate(request([1, 2]))
    assert all(im.time_source == "modelled" and im.generation_time_s == 4.25 for im in images)
    assert gen.config.time_source == "measured" and gen.inference_time_s == 2.5
    images = gen.generate(request([1, 2]))
    assert all(im.time_source == "measured" for im in images)
    assert images[0].generation_time_s == images[1].generation_time_s  # batch time / N
    assert 0 < images[0].generation_time_s != 2.5


def test_scheduler_choice(tiny_models, gen):
    from sim.generation.diffusers_backend import make_scheduler

    assert type(gen.pipeline.scheduler).__name__ == "DPMSolverMultistepScheduler"  # the config's default
    g = make(tiny_models, scheduler=None, steps=2)
    assert type(g.pipeline.scheduler).__name__ == "PNDMScheduler"  # the pipeline's own
    g.pipeline.scheduler = make_scheduler("EulerDiscreteScheduler", g.pipeline)
    assert type(g.pipeline.scheduler).__name__ == "EulerDiscreteScheduler"
    assert g.pipeline.scheduler.config.beta_schedule == "scaled_linear"  # built from the pipeline's config
    assert len(g.generate(request([1]))) == 1
    with pytest.raises(ValueError, match="not a diffusers scheduler compatible"):
        make_scheduler("LCMScheduler", g.pipeline)  # a scheduler, but not of this pipeline's family
    with pytest.raises(ValueError, match=r"'NoSuchScheduler'.*valid names include: DPMSolverMultistepScheduler"):
        make(tiny_models, scheduler="NoSuchScheduler")
    with pytest.raises(ValueError, match="valid names"):
        make(tiny_models, scheduler="AutoencoderKL")  # a diffusers class, not a scheduler


def test_long_prompt_is_truncated_with_one_warning(gen, recwarn):
    gen._warned_truncation = False
    long_prompt = ", ".join(["a very detailed castle on a hill"] * 20)
    with pytest.warns(RuntimeWarning, match="77 tokens"):
        assert len(gen.generate(request([1], prompt=long_prompt))) == 1
    recwarn.clear()
    gen.generate(request([2], prompt=long_prompt))
    assert not [w for w in recwarn if "77 tokens" in str(w.message)]  # once per generator


@pytest.mark.parametrize("size", [60, 4, 33])
def test_bad_image_size(tiny_models, size):
    with pytest.raises(ValueError, match="multiple of 8"):
        make(tiny_models, size=size)


def test_bad_seeds_and_prompt(gen):
    with pytest.raises(ValueError, match="non-negative integers"):
        gen.generate(request([-1]))
    with pytest.raises(ValueError, match="non-empty"):
        gen.generate(GenerationRequest(raw_prompt="", prompt="", strategy=0, seeds=(1,)))


def _one_line_error(exc_info) -> str:
    err = exc_info.value
    assert err.__cause__ is None and err.__suppress_context__  # no chained traceback
    assert "\n" not in str(err)
    return str(err)


def test_missing_model_path(tmp_path, tiny_models):
    with pytest.raises(ModelLoadError) as info:
        make(tiny_models, model=str(tmp_path / "no-such-model"))
    assert "does not exist" in _one_line_error(info)
    assert isinstance(info.value, RuntimeError)


def test_directory_that_is_not_a_pipeline(tiny_models):
    with pytest.raises(ModelLoadError) as info:
        make(tiny_models, model=str(tiny_models["clip"]))
    msg = _one_line_error(info)
    assert "model_index.json" in msg and "save_pretrained" in msg


def test_hub_model_not_available_offline(tiny_models, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError) as info:
        make(tiny_models, model="nobody-here/no-such-model", local_files_only=True)
    msg = _one_line_error(info)
    assert "nobody-here/no-such-model" in msg and "download" in msg


def test_cuda_requested_without_cuda(tiny_models):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="no CUDA device"):
        make(tiny_models, device="cuda")


def test_build_is_deterministic(tiny_models, tmp_path):
    from sim.models import build_tiny_models

    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    again = build_tiny_models(tmp_path, seed=0)
    assert set(again) == {"sd", "clip"}
    for rel in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                "text_encoder/model.safetensors"):
        assert digest(again["sd"] / rel) == digest(tiny_models["sd"] / rel)
    assert digest(again["clip"] / "model.safetensors") == digest(tiny_models["clip"] / "model.safetensors")
