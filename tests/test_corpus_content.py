"""Content checks of corpus elements (sim.prompting.element_checks) and their use by the LLM corpus
(rejected replies regenerated, with feedback) and by the corpus cache (failing entries regenerated)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from sim.prompting.corpus import (
    FEW_SHOT_EXAMPLES,
    MAX_WORDS,
    PHRASE_BANKS_PATH,
    CachedCorpus,
    ContentRejection,
    CorpusError,
    LLMCorpus,
    check_element_content,
    validate_elements,
)
from sim.prompting.element_checks import (
    COPY_JACCARD,
    content_words,
    copied_example,
    cut_off_reason,
    find_content_problems,
    jaccard,
    names_a_defect,
)
from sim.prompting.strategies import ASPECTS, default_corpus
from openai_stub import GOOD_CORPUS

PROMPT = "A dog with a colorful collar"

GOOD = GOOD_CORPUS

WINDMILL, WINDMILL_REPLY = FEW_SHOT_EXAMPLES[0]
CAT, CAT_REPLY = FEW_SHOT_EXAMPLES[1]


def problems(elements: dict[str, str], prompt: str = PROMPT) -> list[tuple[str, str]]:
    with pytest.raises(ContentRejection) as err:
        check_element_content(elements, prompt)
    message = str(err.value)
    assert "\n" not in message
    for p in err.value.problems:
        assert p.reason.startswith(f"{p.aspect}: ") and p.reason in message  # one line, naming the aspect
    return [(p.aspect, p.kind) for p in err.value.problems]


# --- good elements pass ------------------------------------------------------------------------


def test_good_elements_pass():
    check_element_content(GOOD, PROMPT)
    assert validate_elements(GOOD, PROMPT) == GOOD


@pytest.mark.parametrize(("example_prompt", "reply"), FEW_SHOT_EXAMPLES)
def test_an_example_is_not_a_copy_for_its_own_prompt(example_prompt, reply):
    # Its own prompt is exempt from comparison with itself (its elements are the right answer
    # there); they are still checked against the other example and for cut-offs and defects.
    check_element_content(dict(reply), example_prompt)
    check_element_content(dict(reply), "  " + example_prompt.lower() + ". ")  # normalised


def _phrase_bank_phrases() -> list[tuple[str, str, str]]:
    data = yaml.safe_load(PHRASE_BANKS_PATH.read_text(encoding="utf-8"))
    return [(aspect, family, " ".join(phrase.split()))
            for aspect, banks in data["aspects"].items() for family, phrases in banks.items() for phrase in phrases]


def test_every_shipped_phrase_passes():
    """Offline phrase banks and the default corpus: each phrase passes for any prompt (so every
    combination the offline corpus can return does, and its cache entries are never regenerated)."""
    phrases = _phrase_bank_phrases()
    assert len([p for p in phrases if p[0] == "negative"]) >= 36
    for aspect, family, phrase in phrases:
        found = find_content_problems({aspect: phrase}, PROMPT, FEW_SHOT_EXAMPLES, MAX_WORDS)
        assert not found, (family, found)
    for prompt in (PROMPT, "A plate with sushi", "A rainy city street at night, with neon signs", WINDMILL, CAT):
        check_element_content(default_corpus(prompt), prompt)


def test_every_shipped_negative_phrase_names_a_defect():
    negatives = [phrase for aspect, _, phrase in _phrase_bank_phrases() if aspect == "negative"]
    negatives += [default_corpus(PROMPT)["negative"]] + [reply["negative"] for _, reply in FEW_SHOT_EXAMPLES]
    missing = [n for n in negatives if not names_a_defect(n)]
    assert not missing


# --- copied from the worked examples ------------------------------------------------------------


@pytest.mark.parametrize("aspect", ASPECTS)
def test_verbatim_copy_of_an_example_is_rejected(aspect):
    for _, reply in FEW_SHOT_EXAMPLES:
        assert problems({**GOOD, aspect: reply[aspect]}) == [(aspect, "copied_example")]


@pytest.mark.parametrize(
    "near_copy",
    [
        "Sitting on a velvet armchair, in a cozy living room!",  # case and punctuation
        "sitting  on the velvet armchair in a cozy living-room",  # whitespace, article, hyphen
        "sitting on a velvet armchair in a living room",  # one word dropped
        "sitting on a velvet armchair in a cozy warm living room",  # one word added
    ],
)
def test_near_copy_is_rejected(near_copy):
    assert jaccard(content_words(near_copy), content_words(CAT_REPLY["environment"])) >= COPY_JACCARD
    assert problems({**GOOD, "environment": near_copy}) == [("environment", "copied_example")]


def test_copy_of_another_aspect_is_rejected_and_named():
    found = problems({**GOOD, "mood": CAT_REPLY["environment"]})
    assert found == [("mood", "copied_example")]
    assert copied_example(CAT_REPLY["environment"], PROMPT, FEW_SHOT_EXAMPLES) == (CAT, "environment")


def test_whole_example_copied_for_another_prompt_rejects_every_aspect():
    found = problems(dict(WINDMILL_REPLY), "A rainy city street at night, with neon signs")
    assert found == [(a, "copied_example") for a in ASPECTS]
    # the windmill example for the cat prompt: a copy, although the cat example is exempt there
    assert problems(dict(WINDMILL_REPLY), CAT) == [(a, "copied_example") for a in ASPECTS]


@pytest.mark.parametrize(
    ("aspect", "phrase"),
    [
        # generic phrases a reply for any prompt may share words with an example element
        ("lighting", "soft morning light"),
        ("lighting", "soft morning sunlight under a stormy grey sky"),  # 4 of 8 words: J = 0.5
        ("lighting", "warm window light"),
        ("mood", "cheerful and peaceful atmosphere"),  # a subset of "cheerful and peaceful springtime atmosphere": 0.75
        ("mood", "charming and playful"),
        ("quality", "highly detailed, sharp focus, 8k"),
        ("quality", "landscape photography, highly detailed, 8k"),
        ("quality", "pet portrait photography, sharp focus, 8k"),
        ("negative", "blurry, low quality, watermark"),
        ("negative", "extra paws, deformed face, blurry"),
        ("environment", "sitting on a wooden bench in a sunny park"),
        # one word replaced in a four-word phrase: 3 shared of 5 (0.6)
        ("mood", "charming and slightly grumpy"),
    ],
)
def test_generic_or_different_phrases_are_not_copies(aspect, phrase):
    assert copied_example(phrase, PROMPT, FEW_SHOT_EXAMPLES) is None
    check_element_content({**GOOD, aspect: phrase}, PROMPT)


# --- cut off ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("soft light from the window and", "dangling word 'and'"),
        ("a fluffy dog sitting with", "dangling word 'with'"),
        ("a bowl full of", "dangling word 'of'"),
        ("resting on the", "dangling word 'the'"),
        ("a dog wearing a", "dangling word 'a'"),
        ("blurry, low quality,", "ends with ','"),
        ("blurry, low quality, very", "dangling word 'very'"),
        ("very sharp, very fine,very", "dangling word 'very'"),
        ("a dog in a park (with trees", "unbalanced '()'"),
        ('a sign reading "open', "unbalanced '\"'"),
        ("a quiet evening in the park...", "ellipsis"),
        ("soft light from a lamp -", "ends with '-'"),
    ],
)
def test_cut_off_element_is_rejected(text, why):
    assert why in (cut_off_reason(text, MAX_WORDS) or "")
    assert problems({**GOOD, "lighting": text}) == [("lighting", "cut_off")]


def test_element_stopped_at_the_word_limit_is_rejected():
    prose = ("a plate of sushi with slices of fresh tuna and salmon served on a bed of rice beside "
             "a bowl of soy sauce and fresh")
    assert len(prose.split()) == MAX_WORDS
    assert "word limit" in cut_off_reason(prose, MAX_WORDS)
    listed = ", ".join(["sharp focus"] * 12) + ", low"  # 25 words, the last item an open modifier
    assert len(listed.split()) == MAX_WORDS and "word limit" in cut_off_reason(listed, MAX_WORDS)


@pytest.mark.parametrize(
    "text",
    [
        "soft light from the window",
        "calm and serene atmosphere",
        "the dog in sharp focus, clearly visible and well defined",
        "sunlight filtering in",  # ends on an adverb, not a dangling preposition
        "lights switched on",
        "a cat's paw, close up",
        "a dog's collar (rainbow coloured)",
        "studio lighting, f/1.8",
        "high contrast, ISO too high",
        # exactly the word limit, but ending a sentence or a short list item
        " ".join(["word"] * (MAX_WORDS - 1)) + " end.",
        ", ".join(["sharp focus"] * 12) + ", 8k",
    ],
)
def test_complete_phrases_are_not_cut_off(text):
    assert cut_off_reason(text, MAX_WORDS) is None


# --- negative effects that describe defects ------------------------------------------------------


@pytest.mark.parametrize(
    "prose",
    [
        "a quiet village at dawn with soft light",
        "doggy door with a small dog on it's back",
        "the ocean's bounty of the sea",
        "streets at night under a bright light",
        "stinking food, it's very bad for your health",
        "hazy mountains with floating clouds",
    ],
)
def test_scene_prose_as_negative_is_rejected(prose):
    assert not names_a_defect(prose)
    assert problems({**GOOD, "negative": prose}) == [("negative", "negative_not_defects")]


@pytest.mark.parametrize(
    "defects",
    [
        "blurry, distorted",
        "lowres, bad anatomy",
        "low-res, JPEG artifacts",
        "extra fingers, extra limbs, fused fingers",
        "grainy, noisy, pixelated",
        "out of frame, cropped, duplicate",
        "overexposed, underexposed, over-saturated",
        "ugly, disfigured, mutated hands",
        "text, signature, watermark",
        "a blurry photo with a watermark",  # prose that names defects is fine
    ],
)
def test_defect_lists_pass(defects):
    assert names_a_defect(defects)
    check_element_content({**GOOD, "negative": defects}, PROMPT)


def test_a_reply_with_several_problems_names_each():
    bad = {**GOOD, "environment": CAT_REPLY["environment"], "lighting": "warm light with", "negative": "a quiet garden"}
    assert problems(bad) == [("environment", "copied_example"), ("lighting", "cut_off"),
                             ("negative", "negative_not_defects")]


def test_validate_elements_checks_content_only_with_a_prompt():
    bad = {**GOOD, "negative": "a quiet village at dawn with soft light"}
    assert validate_elements(bad) == bad  # shape only, as before
    with pytest.raises(ContentRejection, match=r"^negative: names no image defect"):
        validate_elements(bad, PROMPT)


# --- LLM corpus: a rejected reply is regenerated ---------------------------------------------------

needs_openai = pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="needs openai (pip install openai)")


@pytest.fixture()
def stub():
    from openai_stub import OpenAIStub, reply

    server = OpenAIStub(default=reply(json.dumps(GOOD))).start()
    yield server
    server.stop()


def endpoint(server, **kw):
    from sim.config import LLMEndpointConfig

    base = {"base_url": server.url, "model": "stub-model", "api_key_env": "SIM_TEST_UNSET_KEY", "timeout_s": 5.0,
            "max_retries": 2, "backoff_s": 0.01}
    base.update(kw)
    return LLMEndpointConfig(**base)


@needs_openai
def test_copied_reply_is_regenerated_with_feedback(stub):
    from openai_stub import reply

    copied = {**GOOD, "environment": CAT_REPLY["environment"]}
    stub.push(reply(json.dumps(copied)))
    corpus = LLMCorpus(endpoint(stub))
    assert corpus.elements(PROMPT) == GOOD
    first, second = stub.chat_requests  # exactly two requests
    assert len(second.body["messages"]) == len(first.body["messages"]) + 2
    assert json.loads(second.body["messages"][-2]["content"]) == copied
    feedback = second.body["messages"][-1]["content"]
    assert "environment: copies the worked example's environment" in feedback and PROMPT in feedback
    assert corpus.attempts == 2 and corpus.failures == 0
    assert corpus.rejected == {"copied_example": 1}


@needs_openai
def test_rejections_are_counted_per_reason_then_reported(stub):
    from openai_stub import reply

    stub.push(reply(json.dumps({**GOOD, "negative": "a quiet village at dawn with soft light"})),
              reply(json.dumps({**GOOD, "lighting": "warm light from the", "mood": CAT_REPLY["mood"]})),
              reply('{"object": "a dog"}'))
    corpus = LLMCorpus(endpoint(stub, max_retries=2))
    with pytest.raises(CorpusError) as err:
        corpus.elements(PROMPT)
    message = str(err.value)
    assert "\n" not in message and "after 3 attempt(s)" in message and "malformed reply (missing key" in message
    assert corpus.rejected == {"negative_not_defects": 1, "cut_off": 1, "copied_example": 1, "malformed": 1}
    assert len(stub.chat_requests) == 3 and corpus.failures == 1
    stub.push(reply(json.dumps({**GOOD, "negative": "a quiet village"})))
    stub.default = reply(json.dumps({**GOOD, "negative": "a quiet village"}))
    with pytest.raises(CorpusError, match=r"after 3 attempt\(s\).*: rejected reply \(negative: names no image defect"):
        corpus.elements(PROMPT)


# --- cache: a stored entry that fails the check is regenerated -----------------------------------


class CountingCorpus:
    name = "counting"

    def __init__(self, elements=GOOD):
        self.calls = 0
        self.produces = dict(elements)

    def elements(self, prompt):
        self.calls += 1
        return dict(self.produces)

    def cache_identity(self):
        return {"backend": self.name}


def test_cached_bad_entry_is_regenerated(tmp_path, caplog):
    inner = CountingCorpus()
    cache = CachedCorpus(inner, tmp_path)
    path = cache.path_for(PROMPT)
    path.parent.mkdir(parents=True, exist_ok=True)
    bad = {**GOOD, "environment": CAT_REPLY["environment"], "negative": "a quiet village at dawn with soft light"}
    path.write_text(json.dumps({"backend": "counting", "prompt": PROMPT, "elements": bad}))
    with caplog.at_level("WARNING", logger="sim.prompting.corpus"):
        assert cache.elements(PROMPT) == GOOD
    assert inner.calls == 1 and cache.rejected_entries == 1 and cache.misses == 1
    warnings = [r for r in caplog.records if "fails the content check" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert "environment: copies" in warnings[0].getMessage()
    assert json.loads(path.read_text())["elements"] == GOOD  # replaced on disk
    fresh = CachedCorpus(inner, tmp_path)
    assert fresh.elements(PROMPT) == GOOD and inner.calls == 1 and fresh.hits == 1  # a hit from now on


def test_cache_never_writes_elements_that_fail_the_check(tmp_path):
    inner = CountingCorpus({**GOOD, "negative": "a quiet village at dawn with soft light"})
    cache = CachedCorpus(inner, tmp_path)
    with pytest.raises(CorpusError, match=r"counting corpus returned unusable elements .*negative: names no image defect"):
        cache.elements(PROMPT)
    assert not list(tmp_path.glob("*.json"))


@needs_openai
def test_llm_cache_entry_from_before_the_checks_is_regenerated(stub, tmp_path):
    from sim.backends import build_corpus
    from sim.config import PromptingConfig, Scenario

    scenario = Scenario(name="c", prompting=PromptingConfig(corpus="llm", llm=endpoint(stub), cache_dir=str(tmp_path)))
    corpus = build_corpus(scenario)
    stale = {**GOOD, "object": WINDMILL_REPLY["object"]}
    record = {**corpus.identity, "prompt": PROMPT, "elements": stale}
    corpus.path_for(PROMPT).parent.mkdir(parents=True, exist_ok=True)
    corpus.path_for(PROMPT).write_text(json.dumps(record))
    assert corpus.elements(PROMPT) == GOOD
    assert len(stub.chat_requests) == 1
    assert build_corpus(scenario).elements(PROMPT) == GOOD and len(stub.chat_requests) == 1  # now cached for good
