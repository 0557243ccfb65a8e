"""Content checks of prompt-corpus elements: not copied from the worked examples, not cut off,
negative effects that name image defects.

:func:`sim.prompting.corpus.validate_elements` checks the *shape* of an LLM reply (six keys,
single-line strings of 2-25 words). A reply can have the right shape and still be useless:
a small model copies an element of the two-shot examples verbatim, the grammar stops an element
at the word limit mid-phrase, or the "negative" aspect is scene prose that a diffusion pipeline
would then steer *away* from. :func:`find_content_problems` finds those, one
:class:`ContentProblem` per element, each with a one-line reason that names the aspect:

``copied_example``
    The element's content words (lowercase, punctuation and a few function words dropped) have a
    Jaccard similarity of at least :data:`COPY_JACCARD` (0.8) with any element of a worked example
    whose prompt is not the one being answered. 0.8 catches verbatim copies, copies that differ
    in case or punctuation, and copies with one word dropped or added; one word *replaced* in a
    phrase of up to eight content words is below it (4/6 = 0.67 for a four-word phrase), and
    so are the short generic phrases any prompt may use ("soft morning light", "highly detailed,
    sharp focus, 8k"). An example's own prompt is not checked against that example: its elements
    are the right answer there.
``cut_off``
    The element ends with a dangling word ("and", "with", "of", "the", "a", ...), a trailing
    comma, colon, dash or ellipsis, has an unbalanced bracket or double quote, or has exactly the
    word limit and does not end a sentence or a short list item (a grammar-constrained reply that
    runs long is stopped there mid-phrase).
``negative_not_defects``
    The negative element names no image defect of :data:`DEFECT_TERMS` ("blurry", "deformed
    hands", "watermark", "jpeg artifacts", "extra fingers", "low quality", ...). Scene prose such
    as "a quiet village at dawn with soft light" is rejected.

>>> examples = (("A cat with a red bow tie", {"mood": "charming and slightly mischievous"}),)
>>> [p.kind for p in find_content_problems({"mood": "Charming, and slightly mischievous!"}, "A dog", examples, 25)]
['copied_example']
>>> find_content_problems({"mood": "charming and slightly mischievous"}, "A cat with a red bow tie", examples, 25)
[]
>>> cut_off_reason("soft light from the", 25)
"ends with the dangling word 'the'"
>>> names_a_defect("a quiet village at dawn with soft light"), names_a_defect("blurry, extra fingers")
(False, True)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Jaccard similarity of content words at or above which an element is a copy of an example element.
COPY_JACCARD = 0.8

#: Words dropped before comparing an element with the examples (they carry no content).
_FUNCTION_WORDS = frozenset({"a", "an", "the", "and", "or", "with", "of", "in", "on", "at", "to", "by", "for", "its"})

#: Words that cannot end a prompt element: a phrase that stops on one was cut off.
DANGLING_WORDS = frozenset({
    "a", "an", "the", "and", "or", "nor", "but", "with", "without", "of", "to", "into", "onto", "for",
    "from", "by", "at", "as", "than", "its", "their", "his", "my", "your", "our", "these", "those",
    "very", "featuring", "including", "between", "amid", "among", "like", "such", "whose", "which",
})

#: Modifiers that need a following word; an element of exactly the word limit ending on one was cut there.
_OPEN_MODIFIERS = frozenset({"low", "high", "highly", "extra", "bad", "poor", "poorly", "ultra", "super", "too",
                             "overly", "slightly", "more", "less", "most", "least", "sharp", "soft", "deep"})

#: Image defects a negative element must name at least one of (regular expressions over lowercase
#: words; hyphens and underscores count as spaces). Curated from common Stable Diffusion negative
#: prompts and every phrase of ``sim/data/phrase_banks.yaml``; words that also describe scenes
#: ("haze", "floating", "dark") are left out so that scene prose is not taken for defects.
DEFECT_TERMS: tuple[str, ...] = (
    # blur, noise, compression and resolution
    r"blur\w*", r"out of focus", r"unfocused", r"nois(?:e|y)", r"grain\w*", r"jpe?g", r"artifacts?", r"artefacts?",
    r"compression", r"pixelat\w*", r"low ?res\w*", r"low (?:quality|detail|details|definition|contrast)",
    r"(?:bad|poor|worst|lowest|normal) (?:quality|anatomy|proportions?|hands?|feet|face|eyes|composition|lighting|"
    r"framing|perspective|art|drawing|rendering|details?|resolution)", r"poorly (?:drawn|rendered|lit|framed|composed)",
    r"banding", r"aliasing", r"glitch\w*", r"chromatic aberration",
    r"smudg\w*", r"smear\w*", r"muddy", r"dull", r"bland", r"washed out", r"oversharpen\w*", r"over ?process\w*",
    # exposure and colour
    r"over ?exposed", r"under ?exposed", r"over ?saturated", r"under ?saturated", r"desaturated", r"blown out",
    r"too (?:dark|bright)", r"flat (?:lighting|colou?rs)", r"monochrome", r"grayscale", r"greyscale",
    # geometry and anatomy
    r"distort\w*", r"deform\w*", r"malform\w*", r"disfigur\w*", r"mutat\w*", r"mutilat\w*", r"misshapen",
    r"disproportion\w*", r"asymmetr\w*", r"warp\w*", r"melt\w*", r"twisted", r"crooked", r"tilted", r"bent",
    r"fused", r"extra \w+", r"missing \w+", r"duplicat\w*", r"cloned", r"long neck", r"anatomy",
    r"impossible \w+", r"incoherent", r"unnatural", r"unrealistic", r"uncanny", r"gross", r"ugly",
    # framing
    r"cropped", r"out of frame", r"cut off", r"tiling",
    # text and marks
    r"watermark\w*", r"text", r"signature", r"logo", r"caption", r"username", r"gibberish", r"garbled",
    # look and style
    r"cartoon\w*", r"childish", r"amateur\w*", r"artificial", r"plastic", r"clutter\w*", r"messy",
    r"unappetizing", r"unappetising", r"burnt", r"mushy", r"mou?ldy?", r"rotten", r"nsfw",
)

_DEFECT_RE = re.compile(r"\b(?:" + "|".join(DEFECT_TERMS) + r")\b")

_BRACKETS = (("(", ")"), ("[", "]"), ("{", "}"), ("\u201c", "\u201d"))
_TRAILING_MARKS = ",;:-\u2013\u2014&/"
_SENTENCE_END = ".!?)]\"'\u201d"
#: At the word limit, a final list item longer than this is taken for a phrase cut mid-way.
_SHORT_LIST_ITEM = 3


@dataclass(frozen=True)
class ContentProblem:
    """Why one element was rejected: its aspect, a kind (``copied_example``, ``cut_off``,
    ``negative_not_defects``) and a one-line reason naming the aspect."""

    aspect: str
    kind: str
    reason: str


def content_words(text: str) -> frozenset[str]:
    """Lowercase words of ``text`` without punctuation and function words.

    >>> sorted(content_words("Soft, warm light -- with the shadows!"))
    ['light', 'shadows', 'soft', 'warm']
    """
    return frozenset(w for w in re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower()) if w not in _FUNCTION_WORDS)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """``|a & b| / |a | b|`` (0 for two empty sets)."""
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def _normalise_prompt(prompt: str) -> str:
    return " ".join(prompt.lower().split()).rstrip(".")


def copied_example(text: str, prompt: str, examples: Iterable[tuple[str, Mapping[str, str]]]) -> tuple[str, str] | None:
    """``(example prompt, example aspect)`` of the worked-example element ``text`` copies, if any.

    Elements of the example whose prompt is ``prompt`` itself are not compared.
    """
    words = content_words(text)
    if not words:
        return None
    own = _normalise_prompt(prompt)
    for example_prompt, reply in examples:
        if _normalise_prompt(example_prompt) == own:
            continue
        for aspect, example_text in reply.items():
            if jaccard(words, content_words(example_text)) >= COPY_JACCARD:
                return example_prompt, aspect
    return None


def cut_off_reason(text: str, max_words: int) -> str | None:
    """Why ``text`` looks cut off (``None`` when it ends naturally)."""
    text = text.strip()
    if not text:
        return None
    if text.endswith(("...", "\u2026")):
        return "ends with an ellipsis"
    if text[-1] in _TRAILING_MARKS:
        return f"ends with {text[-1]!r}"
    for opening, closing in _BRACKETS:
        if text.count(opening) != text.count(closing):
            return f"has an unbalanced '{opening}{closing}'"
    if text.count('"') % 2:
        return "has an unbalanced '\"'"
    words = text.split()
    tokens = re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())
    last = tokens[-1] if tokens else ""
    if last in DANGLING_WORDS:
        return f"ends with the dangling word {last!r}"
    if len(words) >= max_words and text[-1] not in _SENTENCE_END:
        final_item = text.rsplit(",", 1)[-1].split()
        if len(final_item) > _SHORT_LIST_ITEM or last in _OPEN_MODIFIERS:
            return f"stops mid-phrase at the {max_words}-word limit"
    return None


def names_a_defect(text: str) -> bool:
    """Whether ``text`` names at least one image defect of :data:`DEFECT_TERMS`."""
    normal = " ".join(re.sub(r"[-_]", " ", text.lower()).split())
    return _DEFECT_RE.search(normal) is not None


def find_content_problems(
    elements: Mapping[str, str],
    prompt: str,
    examples: Iterable[tuple[str, Mapping[str, str]]],
    max_words: int,
    negative_aspect: str = "negative",
) -> list[ContentProblem]:
    """The content problems of ``elements`` (aspect -> text) written for ``prompt``, in aspect order.

    At most one problem per element: a copy first, then a cut-off, then a negative that names no defect.
    """
    examples = tuple(examples)
    problems: list[ContentProblem] = []
    for aspect, text in elements.items():
        copied = copied_example(text, prompt, examples)
        if copied is not None:
            example_prompt, example_aspect = copied
            problems.append(ContentProblem(aspect, "copied_example",
                                           f"{aspect}: copies the worked example's {example_aspect} for {example_prompt!r}"))
            continue
        cut = cut_off_reason(text, max_words)
        if cut is not None:
            problems.append(ContentProblem(aspect, "cut_off", f"{aspect}: looks cut off ({cut}); end it with a complete phrase"))
            continue
        if aspect == negative_aspect and not names_a_defect(text):
            problems.append(ContentProblem(aspect, "negative_not_defects",
                                           f"{aspect}: names no image defect (list defects to avoid, such as "
                                           f"\"blurry, deformed hands, watermark\")"))
    return problems


__all__ = [
    "COPY_JACCARD",
    "DANGLING_WORDS",
    "DEFECT_TERMS",
    "ContentProblem",
    "content_words",
    "copied_example",
    "cut_off_reason",
    "find_content_problems",
    "jaccard",
    "names_a_defect",
]
