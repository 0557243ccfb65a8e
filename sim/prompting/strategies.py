"""The seven prompt-engineering strategies of the D3PG paper's Table II, as data.

A strategy appends elements of a prompt corpus (one element per *aspect*) to the
raw prompt as comma-separated suffixes:

====  ======================  ==============================================
 id    name                    aspects used
====  ======================  ==============================================
 0     raw                     (none: the prompt as the user wrote it)
 1     object                  object description
 2     environment             object description + environment
 3     mood                    ... + mood
 4     lighting                ... + lighting
 5     quality_booster         ... + quality booster
 6     negative_effects        ... + negative effects (as a *negative* prompt)
====  ======================  ==============================================

That is the ``cumulative`` reading (strategy ``s`` uses aspects ``1..s``, so
strategy 6 is the richest refinement by construction). Table II as the paper
prints it is ``printed``: strategy 1 is the object description and each of
strategies 2-6 is the object description plus one aspect (2 environment, 3 mood,
4 lighting, 5 quality booster, 6 negative effects). A scenario chooses with
``prompting.strategy_table`` (default: the quality profile's); the quality model sums the
same aspects (:data:`sim.model.quality.STRATEGY_TABLES`). The negative-effects
aspect never goes into the positive prompt: it becomes the negative prompt a
diffusion pipeline takes.

Where the corpus elements come from is a seam (:class:`PromptCorpus`): the
LLM-generated / embedding-matched corpus plugs in later; :class:`DefaultCorpus`
is a tiny deterministic offline corpus of generic phrases so that the world can
write refined prompt text into its trace.

>>> positive, negative = apply_strategy("A garden with a fountain", 2, default_corpus("A garden with a fountain"))
>>> positive.startswith("A garden with a fountain, ")
True
>>> negative
''
>>> apply_strategy("A beach with a boat", 0, {})
('A beach with a boat', '')
>>> aspects_of(3)
('object', 'environment', 'mood')
>>> aspects_of(3, "printed")
('object', 'mood')
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Mapping, Protocol, runtime_checkable

from sim.model.quality import ASPECTS, N_STRATEGIES, STRATEGY_TABLES

#: The aspect that goes into the negative prompt rather than the positive one.
NEGATIVE_ASPECT = "negative"


@dataclass(frozen=True)
class Strategy:
    """One prompt-engineering strategy (a row of Table II)."""

    id: int
    name: str
    #: Aspects whose corpus elements this strategy appends, in order.
    aspects: tuple[str, ...]
    description: str = ""


STRATEGIES: tuple[Strategy, ...] = (
    Strategy(0, "raw", (), "the raw prompt, unchanged"),
    Strategy(1, "object", ASPECTS[:1], "adds a description of the main object"),
    Strategy(2, "environment", ASPECTS[:2], "object description + environment"),
    Strategy(3, "mood", ASPECTS[:3], "object description + environment + mood"),
    Strategy(4, "lighting", ASPECTS[:4], "... + lighting"),
    Strategy(5, "quality_booster", ASPECTS[:5], "... + quality booster (e.g. 'highly detailed')"),
    Strategy(6, "negative_effects", ASPECTS[:6], "... + negative effects as a negative prompt"),
)

if len(STRATEGIES) != N_STRATEGIES:  # pragma: no cover - a table edit that forgot the quality model
    raise RuntimeError(f"Table II has {len(STRATEGIES)} strategies; sim.model.quality.N_STRATEGIES says {N_STRATEGIES}")


def validate_strategy(strategy: object) -> int:
    """Return ``strategy`` as an int if it names a strategy of Table II, else raise ValueError.

    >>> validate_strategy(6)
    6
    >>> validate_strategy(7)
    Traceback (most recent call last):
    ...
    ValueError: unknown prompt strategy 7: strategies are integers 0..6 (0 raw, 1 object, 2 environment, 3 mood, 4 lighting, 5 quality_booster, 6 negative_effects)
    """
    known = ", ".join(f"{s.id} {s.name}" for s in STRATEGIES)
    # bool is an int subclass; numpy integers are accepted via __index__.
    if isinstance(strategy, bool) or not hasattr(strategy, "__index__"):
        raise ValueError(f"prompt strategy must be an integer 0..{N_STRATEGIES - 1} ({known}), got {strategy!r}")
    value = int(strategy.__index__())  # type: ignore[attr-defined]
    if not 0 <= value < N_STRATEGIES:
        raise ValueError(
            f"unknown prompt strategy {value}: strategies are integers 0..{N_STRATEGIES - 1} ({known})"
        )
    return value


def aspects_of(strategy: int, table: str = "cumulative") -> tuple[str, ...]:
    """The aspects strategy ``strategy`` appends under a reading of Table II (:data:`STRATEGY_TABLES`)."""
    if table not in STRATEGY_TABLES:
        raise ValueError(f"strategy table must be one of {', '.join(STRATEGY_TABLES)}, got {table!r}")
    return tuple(ASPECTS[a] for a in STRATEGY_TABLES[table][validate_strategy(strategy)])


@runtime_checkable
class PromptCorpus(Protocol):
    """Source of prompt-engineering elements: one phrase per aspect for a given prompt.

    Backends: an LLM (two-shot prompting, one element per aspect) or offline phrase
    banks matched by embedding similarity; :class:`DefaultCorpus` is the fallback.
    """

    def elements(self, prompt: str) -> dict[str, str]:
        """A phrase for each aspect in :data:`ASPECTS` (keys are aspect names)."""
        ...


def apply_strategy(prompt: str, strategy: int, corpus: Mapping[str, str], table: str = "cumulative") -> tuple[str, str]:
    """Refine ``prompt`` with ``strategy`` (under the reading ``table`` of Table II) using the corpus elements
    ``corpus`` (aspect -> phrase).

    Returns ``(positive_prompt, negative_prompt)``. Non-negative aspects are appended
    to the raw prompt as ``", "``-separated suffixes; the negative-effects aspect
    becomes the negative prompt (empty for strategies 0-5). Empty elements are skipped.

    >>> corpus = {"object": "a stone fountain with clear water", "environment": "in a walled garden",
    ...           "mood": "serene", "lighting": "soft light", "quality": "highly detailed",
    ...           "negative": "blurry, low quality"}
    >>> apply_strategy("A garden with a fountain", 1, corpus)
    ('A garden with a fountain, a stone fountain with clear water', '')
    >>> apply_strategy("A garden with a fountain", 6, corpus)[1]
    'blurry, low quality'
    >>> apply_strategy("A garden with a fountain", 6, corpus, "printed")
    ('A garden with a fountain, a stone fountain with clear water', 'blurry, low quality')
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    aspects = aspects_of(strategy, table)
    missing = [a for a in aspects if a not in corpus]
    if missing:
        raise KeyError(
            f"prompt corpus lacks aspect(s) {', '.join(missing)} needed by strategy {strategy} "
            f"({STRATEGIES[int(strategy)].name}); it has: {', '.join(sorted(corpus)) or 'nothing'}"
        )
    suffixes = [corpus[a].strip() for a in aspects if a != NEGATIVE_ASPECT and corpus[a].strip()]
    positive = ", ".join([prompt.strip(), *suffixes])
    negative = corpus[NEGATIVE_ASPECT].strip() if NEGATIVE_ASPECT in aspects else ""
    return positive, negative


# --- the tiny deterministic default corpus --------------------------------------------

_ENVIRONMENT = (
    "in a detailed, coherent setting",
    "with a rich, layered background",
    "set in a wide open space with depth",
    "surrounded by a natural, believable environment",
)
_MOOD = (
    "calm and serene atmosphere",
    "vibrant, joyful mood",
    "dreamy, nostalgic atmosphere",
    "dramatic, cinematic mood",
)
_LIGHTING = (
    "soft golden-hour lighting",
    "soft diffused daylight",
    "warm ambient light with gentle shadows",
    "crisp natural light with high dynamic range",
)
_QUALITY = (
    "highly detailed, sharp focus, 8k",
    "masterpiece, best quality, highly detailed",
    "ultra detailed, professional photography",
    "intricate details, award-winning composition",
)
_NEGATIVE = "blurry, low quality, distorted, deformed, watermark, text, oversaturated"


def _subject(prompt: str) -> str:
    """The object part of an "A [scene], with [object]" prompt (the whole prompt otherwise)."""
    text = prompt.strip().rstrip(".")
    lower = text.lower()
    idx = lower.rfind(" with ")
    obj = text[idx + len(" with ") :] if idx >= 0 else text
    obj = obj.strip(" ,")
    for article in ("a ", "an ", "the "):
        if obj.lower().startswith(article):
            obj = obj[len(article) :]
            break
    return obj or text


def default_corpus(prompt: str) -> dict[str, str]:
    """Generic phrases per aspect, chosen deterministically from the prompt text.

    The choice depends only on the prompt (CRC-32 of its text, stable across processes).

    >>> c = default_corpus("A dog with a colorful collar")
    >>> sorted(c) == sorted(ASPECTS)
    True
    >>> c["object"]
    'the colorful collar in sharp focus, clearly visible and well defined'
    >>> c == default_corpus("A dog with a colorful collar")
    True
    """
    h = zlib.crc32(prompt.strip().encode("utf-8"))
    pick = lambda bank, salt: bank[((h >> (salt * 5)) ^ salt) % len(bank)]  # noqa: E731
    return {
        "object": f"the {_subject(prompt)} in sharp focus, clearly visible and well defined",
        "environment": pick(_ENVIRONMENT, 1),
        "mood": pick(_MOOD, 2),
        "lighting": pick(_LIGHTING, 3),
        "quality": pick(_QUALITY, 4),
        "negative": _NEGATIVE,
    }


class DefaultCorpus:
    """The offline fallback :class:`PromptCorpus`: :func:`default_corpus` as an object."""

    name = "default"

    def elements(self, prompt: str) -> dict[str, str]:
        return default_corpus(prompt)
