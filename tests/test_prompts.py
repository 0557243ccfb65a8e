"""The shipped prompt set and the prompt-engineering strategies of Table II."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim.model.quality import prompt_complexity
from sim.prompting.prompts import (
    DEFAULT_PROMPTS_PATH,
    Prompt,
    PromptSetError,
    load_prompts,
)
from sim.prompting.strategies import (
    ASPECTS,
    N_STRATEGIES,
    STRATEGIES,
    DefaultCorpus,
    PromptCorpus,
    apply_strategy,
    aspects_of,
    default_corpus,
    validate_strategy,
)

PAPER_EXAMPLES = ("A garden with a fountain", "A city with blue car", "A dog with a colorful collar")


@pytest.fixture(scope="module")
def prompts() -> list[Prompt]:
    return load_prompts()


def test_prompt_set_size_and_paper_examples(prompts):
    assert len(prompts) >= 120
    texts = [p.text for p in prompts]
    for example in PAPER_EXAMPLES:
        assert example in texts


def test_ids_and_texts_unique(prompts):
    assert len({p.id for p in prompts}) == len(prompts)
    assert len({p.text.lower() for p in prompts}) == len(prompts)


def test_prompts_follow_the_template(prompts):
    for p in prompts:
        assert p.text.startswith(("A ", "An ")), p.text
        assert " with " in p.text, p.text
        assert p.scene.lower() in p.text.lower() and p.object.lower() in p.text.lower()
        assert p.category
    categories = {p.category for p in prompts}
    assert {"animals", "cities", "nature", "interiors", "vehicles", "food", "people", "fantasy"} <= categories


def test_complexity_spans_a_range(prompts):
    c = np.array([p.complexity for p in prompts])
    assert all(p.complexity == prompt_complexity(p.text) for p in prompts)
    assert c.min() == 0.0 and c.max() >= 0.9
    # not bunched at one end: every third of the range holds prompts
    assert np.all(np.histogram(c, bins=3, range=(0, 1))[0] >= 10)


def test_prompt_is_frozen(prompts):
    with pytest.raises(dataclasses.FrozenInstanceError):
        prompts[0].text = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("prompts: []", "non-empty list"),
        ("prompts: [{text: A beach with a boat, scene: beach}]", "missing required key 'object'"),
        ("prompts: [{text: A beach with a boat, scene: beach, object: car}]", "does not occur in the text"),
        ("prompts: [{text: A beach with a boat, scene: beach, object: boat, colour: red}]", "unknown key(s) colour"),
        (
            "prompts:\n - {id: a, text: A beach with a boat, scene: beach, object: boat}\n"
            " - {id: a, text: A lake with a boat, scene: lake, object: boat}",
            "duplicate id 'a'",
        ),
        (
            "prompts:\n - {text: A beach with a boat, scene: beach, object: boat}\n"
            " - {text: a beach  with a BOAT, scene: beach, object: boat}",
            "duplicate text",
        ),
        ("prompts: [{text: '', scene: beach, object: boat}]", "non-empty string"),
        ("prompts: [unclosed", "not valid YAML"),
        ("other: 1", "unknown top-level key(s) other"),
    ],
)
def test_bad_prompt_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "p.yaml"
    path.write_text(content)
    with pytest.raises(PromptSetError) as err:
        load_prompts(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_prompt_file(tmp_path):
    with pytest.raises(PromptSetError, match="not found"):
        load_prompts(tmp_path / "nope.yaml")


def test_minimal_file_defaults(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("- {text: A beach with a boat, scene: beach, object: boat}\n")
    (p,) = load_prompts(path)
    assert (p.id, p.category, p.complexity) == ("p000", "other", 0.0)
    assert DEFAULT_PROMPTS_PATH.is_file()


# --- strategies ---------------------------------------------------------------------------


def test_strategy_table():
    assert N_STRATEGIES == 7 and [s.id for s in STRATEGIES] == list(range(7))
    assert aspects_of(0) == ()
    for s in range(1, 7):
        # cumulative: strategy s uses aspects 1..s, and each of 2-6 keeps the object description
        assert aspects_of(s) == ASPECTS[:s]
        assert aspects_of(s)[0] == "object"
        assert set(aspects_of(s - 1)) < set(aspects_of(s))
    assert aspects_of(6)[-1] == "negative"


def test_apply_strategy_cumulative_and_negative_routing():
    corpus = {a: f"<{a}>" for a in ASPECTS}
    prompt = "A dog with a colorful collar"
    previous = prompt
    for s in range(7):
        positive, negative = apply_strategy(prompt, s, corpus)
        assert positive.startswith(prompt)
        assert positive.startswith(previous)  # each strategy extends the previous one
        assert "<negative>" not in positive
        assert negative == ("<negative>" if s == 6 else "")
        previous = positive
    assert apply_strategy(prompt, 0, corpus) == (prompt, "")
    assert apply_strategy(prompt, 5, corpus)[0] == (
        prompt + ", <object>, <environment>, <mood>, <lighting>, <quality>"
    )


def test_default_corpus_is_deterministic_and_complete():
    for text in PAPER_EXAMPLES:
        c = default_corpus(text)
        assert set(c) == set(ASPECTS) and all(c.values())
        assert c == default_corpus(text)
    assert "colorful collar" in default_corpus("A dog with a colorful collar")["object"]
    assert "blurry" in default_corpus("A city with blue car")["negative"]
    corpus = DefaultCorpus()
    assert isinstance(corpus, PromptCorpus)
    positive, negative = apply_strategy("A city with blue car", 6, corpus.elements("A city with blue car"))
    assert positive.count(",") >= 5 and negative


@pytest.mark.parametrize("bad", [-1, 7, 2.5, "3", None, True])
def test_invalid_strategy_errors(bad):
    with pytest.raises(ValueError, match="strateg"):
        validate_strategy(bad)
    with pytest.raises(ValueError, match="strateg"):
        apply_strategy("A beach with a boat", bad, default_corpus("A beach with a boat"))


def test_numpy_integer_strategy_accepted():
    assert validate_strategy(np.int64(4)) == 4


def test_corpus_missing_aspect_and_empty_prompt():
    with pytest.raises(KeyError, match="lacks aspect"):
        apply_strategy("A beach with a boat", 3, {"object": "x"})
    with pytest.raises(ValueError, match="non-empty"):
        apply_strategy("  ", 0, {})
