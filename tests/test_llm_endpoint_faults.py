"""LLM endpoints that misbehave: backoff with jitter, Retry-After, errors not worth retrying, a failure budget,
failure reasons in the trace and the run log, and an assessor that is broken caught through ``python -m sim run``."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from openai_stub import OpenAIStub, reply, slow, status  # noqa: E402

from sim.assessment.llm import FailureBudgetSpent, LLMAssessor  # noqa: E402
from sim.config import LLMAssessorConfig, LLMEndpointConfig  # noqa: E402
from sim.generation.base import GeneratedImage  # noqa: E402
from sim.generation.surrogate import render_encoded  # noqa: E402
from sim.prompting.corpus import backoff_wait_s  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "SIM_TEST_FAULTS_KEY"
#: Tests that talk to the stub server go through the real ``openai`` client (the ``real`` extra).
needs_openai = pytest.mark.skipif(importlib.util.find_spec("openai") is None,
                                  reason="needs the openai client (pip install -e '.[real]')")
GOOD = json.dumps({"score": 7.5, "reason": "fine"})


@pytest.fixture()
def stub():
    server = OpenAIStub(default=reply(GOOD)).start()
    yield server
    server.stop()


def _assessor(server: OpenAIStub, **kw) -> LLMAssessor:
    endpoint = {"base_url": server.url, "model": "stub-model", "api_key_env": KEY_ENV, "timeout_s": 5.0,
                "max_retries": 2, "backoff_s": 0.05, "max_backoff_s": 2.0}
    endpoint.update(kw.pop("endpoint", {}))
    return LLMAssessor(LLMAssessorConfig(endpoint=LLMEndpointConfig(**endpoint), rag_top_k=0, memory_size=0, **kw),
                       json_schema=False)


def _image() -> GeneratedImage:
    data, pixels = render_encoded("A dog with a colorful collar", 3, size=32)
    return GeneratedImage(data, "jpeg", pixels, seed=3, generation_time_s=1.0, generation_score=7.0)


def test_backoff_doubles_with_jitter_and_is_capped():
    import random

    config = LLMEndpointConfig(backoff_s=1.0, max_backoff_s=5.0)
    rng = random.Random(0)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (8, 5.0)):
        waits = [backoff_wait_s(config, attempt, rng=rng) for _ in range(200)]
        assert 0.5 * ceiling <= min(waits) and max(waits) <= ceiling
        assert max(waits) - min(waits) > 0.2 * ceiling  # jittered, not in step


@needs_openai
def test_retry_after_on_429_is_honoured(stub):
    stub.push(status(429, retry_after=0.4), status(429, retry_after=0.4))
    llm = _assessor(stub, endpoint={"backoff_s": 0.0})
    t0 = time.monotonic()
    verdict = llm.assess(_image(), _image().data, "A dog")
    elapsed = time.monotonic() - t0
    assert not verdict.failed and verdict.score == 7.5
    assert len(stub.chat_requests) == 3
    gaps = [b.time - a.time for a, b in zip(stub.chat_requests, stub.chat_requests[1:])]
    assert all(g >= 0.38 for g in gaps), gaps  # waited what the server asked, not the (zero) backoff
    assert elapsed >= 0.8


@needs_openai
def test_retries_back_off_instead_of_hammering(stub):
    stub.default = status(500)
    llm = _assessor(stub, endpoint={"backoff_s": 0.2, "max_retries": 3})
    verdict = llm.assess(_image(), _image().data, "A dog")
    assert verdict.failed and "HTTP 500" in verdict.detail
    times = [r.time for r in stub.chat_requests]
    assert len(times) == 4
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4  # 0.2, 0.4, 0.8 s ceilings, drawn in [half, all]


@needs_openai
@pytest.mark.parametrize("action, cause", [
    (status(400, message="bad parameter"), "malformed"),
    (status(401), "API key"),
    (status(404, message="model not found"), "no such model"),
    (status(500, message="image input is not supported by this model"), "text-only model"),
    (status(400, message="Invalid content type. image_url is only supported by certain models."), "text-only model"),
])
def test_errors_not_worth_retrying_are_named_and_asked_once(stub, action, cause):
    stub.default = action
    verdict = _assessor(stub, endpoint={"max_retries": 3}).assess(_image(), _image().data, "A dog")
    assert verdict.failed and cause in verdict.detail
    assert len(stub.chat_requests) == 1


@needs_openai
def test_failure_budget_then_fallback_stops_asking_the_endpoint(stub):
    stub.default = status(503)
    llm = _assessor(stub, endpoint={"max_retries": 1, "backoff_s": 0.01}, failure_budget=2,
                    on_failure_budget="fallback")
    verdicts = [llm.assess(_image(), _image().data, "A dog") for _ in range(6)]
    assert all(v.failed for v in verdicts)
    assert len(stub.chat_requests) == 4  # 2 images x 2 attempts, then the endpoint is left alone
    assert "failure budget spent" in verdicts[-1].detail and "HTTP 503" in verdicts[-1].detail


@needs_openai
def test_failure_budget_then_stop_ends_the_run(stub):
    stub.default = slow(GOOD, delay_s=3.0)
    llm = _assessor(stub, endpoint={"timeout_s": 0.2, "max_retries": 0}, failure_budget=1, on_failure_budget="stop")
    t0 = time.monotonic()
    assert llm.assess(_image(), _image().data, "A dog").failed
    with pytest.raises(FailureBudgetSpent, match="failure_budget"):
        llm.assess(_image(), _image().data, "A dog")
    assert time.monotonic() - t0 < 2.0 and len(stub.chat_requests) == 1


@needs_openai
def test_a_broken_assessor_is_caught_through_the_cli(stub, tmp_path):
    """Every request fails: the run says so (exit 3 or a failed run), and the trace and run.log say why."""
    stub.default = status(500, message="model crashed")
    scenario = tmp_path / "llm.yaml"
    scenario.write_text(
        "name: broken_judge\narrivals: {process: batch, n_users: 2}\ngenerator: {image_size: 32}\n"
        "service: {max_rounds: 1, max_images_per_round: 2}\n"
        "provisioning_agent: {name: static, params: {n_images: 2}}\n"
        "assessor:\n  backend: llm\n  llm:\n    rag_top_k: 0\n    failure_budget: 100\n"
        f"    endpoint: {{base_url: '{stub.url}', model: stub-model, api_key_env: {KEY_ENV}, max_retries: 1,"
        " backoff_s: 0.01}\n"
    )
    env = {**os.environ, KEY_ENV: "sk-test"}
    done = subprocess.run([sys.executable, "-m", "sim", "run", str(scenario), "--quiet", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert done.returncode == 3, done.stderr
    assert "warning: every assessment (4) failed" in done.stderr
    trace = pd.read_parquet(tmp_path / "o" / "trace.parquet")
    images = trace[trace["record"] == "image"]
    assert images["assessment_failed"].all() and images["assessment_detail"].str.contains("model crashed").all()
    assert "model crashed" in (tmp_path / "o" / "run.log").read_text()
    assert len(stub.chat_requests) == 8  # 4 images x 2 attempts


@pytest.mark.parametrize("variable", ["HOME", "PATH", "DB_PASSWORD", "openai_api_key", "KEY_FILE"])
def test_api_key_env_must_name_a_key_variable(variable):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="api_key_env must name"):
        LLMEndpointConfig(api_key_env=variable)
    LLMEndpointConfig(api_key_env="MY_SERVER_TOKEN")


def test_a_key_is_never_sent_in_clear_text_to_another_host(monkeypatch):
    from sim.prompting.corpus import CorpusError, endpoint_api_key

    monkeypatch.setenv(KEY_ENV, "sk-secret")
    with pytest.raises(CorpusError, match="plain HTTP to example.com"):
        endpoint_api_key(LLMEndpointConfig(base_url="http://example.com/v1", api_key_env=KEY_ENV))
    assert endpoint_api_key(LLMEndpointConfig(base_url="https://example.com/v1", api_key_env=KEY_ENV)) == "sk-secret"
    assert endpoint_api_key(LLMEndpointConfig(base_url="http://127.0.0.1:8080/v1", api_key_env=KEY_ENV)) == "sk-secret"
    monkeypatch.delenv(KEY_ENV)
    assert endpoint_api_key(LLMEndpointConfig(base_url="http://example.com/v1", api_key_env=KEY_ENV)) != "sk-secret"
