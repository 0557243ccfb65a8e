"""Prompt corpora: one prompt-engineering element per aspect of Table II, for any prompt.

:func:`build_corpus` turns ``prompting:`` of a scenario into a
:class:`~sim.prompting.strategies.PromptCorpus`:

``offline`` (:class:`OfflineCorpus`)
    Curated phrase banks (``sim/data/phrase_banks.yaml``): for each aspect, four phrases for
    each of eight subject families (animals, cities, nature, interiors, vehicles, food,
    people, fantasy) and four generic ones. A prompt is matched by all-MiniLM-L6-v2 cosine
    similarity (:mod:`sim.prompting.embedding`), aspect by aspect, with a query that fits the
    aspect: the *object* part of an "A [scene], with [object]" prompt for the object
    description, the *scene* part for the environment (each mixed 60/40 with the whole
    prompt), the whole prompt for mood, lighting, quality booster and negative effects.
    Each phrase scores ``family_score + 0.5 * cos(query, phrase)``, where ``family_score``
    is the query's best cosine to the family's anchor texts (a fixed 0.28 for ``generic``,
    so generic phrases win when no family fits). The best phrase wins; ties go to the
    earlier phrase. Deterministic: the same prompt gives the same corpus.

``llm`` (:class:`LLMCorpus`)
    Two-shot prompting of an OpenAI-compatible chat model (the ``openai`` client; any
    server: OpenAI, vLLM, Ollama, llama.cpp). Messages: a system prompt that explains the
    six aspects and the strict output format, two worked examples (user prompt -> assistant
    JSON), then the real prompt. The reply must be **one JSON object with exactly the six
    keys** ``object, environment, mood, lighting, quality, negative``, each a single-line
    string of 2-25 words; the request sets ``response_format={"type": "json_object"}``
    (and adds a JSON schema, ``{"type": "json_object", "schema": {...}}``, for llama.cpp
    servers, whose grammar-constrained decoding then enforces the keys, the string type and
    the 2-25 single-spaced words through a ``pattern``: see ``json_schema``). Code fences around the JSON are stripped.
    A reply of the right shape is then checked for content (:func:`check_element_content`,
    :mod:`sim.prompting.element_checks`): no element copied, verbatim or nearly (Jaccard
    similarity of content words >= 0.8), from a worked example written for another prompt; none
    cut off (a dangling "and"/"with"/"of"/"the", a trailing comma, an unbalanced bracket, or
    stopped mid-phrase at the 25-word limit); a negative element that names at least one image
    defect ("blurry", "extra fingers", "watermark", "jpeg artifacts", ...), not scene prose.
    A malformed or rejected reply, a
    timeout, a connection error or an HTTP 408/429/5xx is retried up to
    ``max_retries`` times (a malformed or rejected reply is shown back to the model with what was wrong;
    between attempts it waits the server's ``Retry-After`` or backs off exponentially with
    jitter, :func:`backoff_wait_s`; other statuses are not retried and name their likely cause);
    then :class:`CorpusError` says in one line what failed, where (endpoint) and with
    which model. Retries and failures are logged (logger ``sim.prompting.corpus``) and
    counted on the instance (``attempts``, ``failures``, ``rejected`` per reason), never hidden.

Both are wrapped by :class:`CachedCorpus`: one JSON file per prompt under
``prompting.cache_dir``, named by the SHA-256 of (backend, model and endpoint for ``llm``
or the phrase-bank hash for ``offline``, prompt), written atomically (temporary file +
``os.replace``). A cache hit never calls the backend; a corrupt cache file, or one whose
elements fail the content check (written before it, or by hand), is reported and replaced.
Only valid corpora are ever written.

>>> split_prompt("A rainy city street at night, with neon signs")
('rainy city street at night', 'neon signs')
>>> split_prompt("A dog with a colorful collar")
('dog', 'colorful collar')
>>> validate_elements({"object": "a red fox", "environment": "in a snowy forest", "mood": "calm and quiet",
...     "lighting": "soft winter light", "quality": "highly detailed, 8k", "negative": "blurry, deformed"})["object"]
'a red fox'
>>> validate_elements({"object": "fox"})
Traceback (most recent call last):
...
ValueError: missing key(s) environment, mood, lighting, quality, negative
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections import Counter
from email.utils import parsedate_to_datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sim.config import LLMEndpointConfig
from sim.io import write_json
from sim.prompting.element_checks import ContentProblem, find_content_problems
from sim.prompting.strategies import ASPECTS, NEGATIVE_ASPECT

log = logging.getLogger(__name__)

#: Phrase banks of the offline corpus.
PHRASE_BANKS_PATH = Path(__file__).resolve().parent.parent / "data" / "phrase_banks.yaml"

#: Subject families of the phrase banks (``generic`` last: it has no anchors).
FAMILIES: tuple[str, ...] = ("animals", "cities", "nature", "interiors", "vehicles", "food", "people", "fantasy", "generic")

#: Family score given to the generic phrases (a prompt's best family cosine is usually 0.3-0.6).
GENERIC_FAMILY_SCORE = 0.28
#: Weight of the phrase's own cosine similarity against the family score.
PHRASE_WEIGHT = 0.5
#: Share of the object / scene part in the object / environment queries (the rest is the whole prompt).
PART_WEIGHT = 0.6

#: Words allowed per element of an LLM-written corpus.
MIN_WORDS, MAX_WORDS = 2, 25

#: Placeholder API key sent when the configured key variable is unset (local servers ignore it).
PLACEHOLDER_API_KEY = "not-needed"

#: What an OpenAI-compatible client gets when neither the config nor OPENAI_BASE_URL names an endpoint.
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"


class CorpusError(RuntimeError):
    """A prompt corpus that cannot be produced (endpoint down, malformed replies, bad phrase bank)."""


class ContentRejection(ValueError):
    """Elements of the right shape whose content is unusable (:mod:`sim.prompting.element_checks`).

    ``problems`` lists one :class:`~sim.prompting.element_checks.ContentProblem` per rejected
    element; the message joins their one-line reasons.
    """

    def __init__(self, problems: list[ContentProblem]):
        self.problems = list(problems)
        super().__init__("; ".join(p.reason for p in self.problems))


# --- prompt parsing and validation -----------------------------------------------------------

_ARTICLES = ("a ", "an ", "the ")


def _strip_article(text: str) -> str:
    text = text.strip(" ,.")
    for article in _ARTICLES:
        if text.lower().startswith(article):
            return text[len(article) :].strip()
    return text


def split_prompt(prompt: str) -> tuple[str, str]:
    """``(scene, object)`` of an "A [scene], with [object]" prompt (both the whole prompt otherwise).

    Splits at the first ``", with "``, else at the first ``" with "``.
    """
    text = " ".join(prompt.split()).rstrip(".")
    lower = text.lower()
    for sep in (", with ", " with "):
        idx = lower.find(sep)
        if idx > 0:
            scene, obj = _strip_article(text[:idx]), _strip_article(text[idx + len(sep) :])
            if scene and obj:
                return scene, obj
    whole = _strip_article(text) or text
    return whole, whole


def validate_elements(data: Any, prompt: str | None = None) -> dict[str, str]:
    """Check an LLM-written corpus: exactly the six aspect keys, single-line strings of 2-25 words;
    with ``prompt`` (the prompt it was written for) also their content (:func:`check_element_content`).

    Returns the elements with surrounding whitespace stripped; raises ValueError saying what is wrong
    (:class:`ContentRejection`, a ValueError, for content).
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    missing = [a for a in ASPECTS if a not in data]
    if missing:
        raise ValueError(f"missing key(s) {', '.join(missing)}")
    extra = sorted(str(k) for k in data if k not in ASPECTS)
    if extra:
        raise ValueError(f"unexpected key(s) {', '.join(extra)}; exactly {', '.join(ASPECTS)} are allowed")
    out: dict[str, str] = {}
    for aspect in ASPECTS:
        value = data[aspect]
        if not isinstance(value, str):
            raise ValueError(f"{aspect}: expected a string, got {type(value).__name__}")
        value = value.strip()
        if "\n" in value or "\r" in value:
            raise ValueError(f"{aspect}: must be one line, got a newline")
        n = len(value.split())
        if not MIN_WORDS <= n <= MAX_WORDS:
            raise ValueError(f"{aspect}: expected {MIN_WORDS}-{MAX_WORDS} words, got {n}")
        out[aspect] = value
    if prompt is not None:
        check_element_content(out, prompt)
    return out


def check_element_content(elements: dict[str, str], prompt: str) -> None:
    """Reject elements copied from :data:`FEW_SHOT_EXAMPLES` (for another prompt), cut off, or
    a negative aspect that names no image defect (:func:`~sim.prompting.element_checks.find_content_problems`).

    Raises :class:`ContentRejection` with one reason per rejected element.

    >>> check_element_content({"negative": "a quiet village at dawn with soft light"}, "A village")
    Traceback (most recent call last):
    ...
    sim.prompting.corpus.ContentRejection: negative: names no image defect (list defects to avoid, such as "blurry, deformed hands, watermark")
    """
    problems = find_content_problems(elements, prompt, FEW_SHOT_EXAMPLES, MAX_WORDS, negative_aspect=NEGATIVE_ASPECT)
    if problems:
        raise ContentRejection(problems)


_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def strip_code_fences(text: str) -> str:
    """The content of a Markdown code fence (``````json ... ```````), or ``text`` stripped.

    >>> strip_code_fences('```json\\n{"a": 1}\\n```')
    '{"a": 1}'
    """
    m = _FENCE.match(text)
    return (m.group(1) if m else text).strip()


def parse_json_object(text: str) -> Any:
    """The JSON object in a chat reply: the whole reply, a fenced block, or the first ``{...}`` span.

    >>> parse_json_object('Sure! {"score": 7} Hope that helps.')
    {'score': 7}
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty reply")
    body = strip_code_fences(text)
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        pass
    start = body.find("{")
    if start >= 0:
        try:
            obj, _ = json.JSONDecoder().raw_decode(body[start:])
            return obj
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} at char {exc.pos + start}") from None
    raise ValueError("no JSON object in the reply")


def _short(text: str, n: int = 160) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= n else one[: n - 3] + "..."


# --- shared OpenAI-compatible endpoint plumbing (also used by sim.assessment.llm) -----------------


def endpoint_base_url(endpoint: LLMEndpointConfig) -> str:
    """The base URL requests go to: the config's, else ``OPENAI_BASE_URL``, else OpenAI's API."""
    return (endpoint.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL).rstrip("/")


def endpoint_api_key(endpoint: LLMEndpointConfig) -> str:
    """The API key from the environment variable ``endpoint.api_key_env``; a placeholder when unset.

    Local servers (llama.cpp, vLLM, Ollama) accept any key, so an unset variable sends
    :data:`PLACEHOLDER_API_KEY` (logged once per variable); a hosted API then answers 401.
    """
    key = os.environ.get(endpoint.api_key_env)
    if key:
        check_key_transport(endpoint_base_url(endpoint), endpoint.api_key_env)
        return key
    if endpoint.api_key_env not in _WARNED_KEYS:
        _WARNED_KEYS.add(endpoint.api_key_env)
        log.warning(
            "environment variable %s is unset: sending the placeholder API key %r (fine for local servers)",
            endpoint.api_key_env,
            PLACEHOLDER_API_KEY,
        )
    return PLACEHOLDER_API_KEY


_WARNED_KEYS: set[str] = set()

_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")


def check_key_transport(base_url: str, variable: str) -> None:
    """Refuse to send a real API key in clear text: plain ``http://`` is for this machine only.

    >>> check_key_transport("http://127.0.0.1:8000/v1", "OPENAI_API_KEY")
    >>> check_key_transport("http://example.com/v1", "OPENAI_API_KEY")
    Traceback (most recent call last):
    ...
    sim.prompting.corpus.CorpusError: refusing to send the key in OPENAI_API_KEY over plain HTTP to example.com: use https://, or a server on this machine (localhost)
    """
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "http" and host not in _LOCAL_HOSTS and not host.startswith("127."):
        raise CorpusError(f"refusing to send the key in {variable} over plain HTTP to {host}: use https://, or a "
                          "server on this machine (localhost)")


def openai_client(endpoint: LLMEndpointConfig) -> Any:
    """An ``openai.OpenAI`` client for ``endpoint`` with its timeout and *no* client-side retries
    (callers retry themselves, so that attempts are bounded and counted)."""
    try:
        from openai import OpenAI
    except ImportError:
        raise CorpusError("LLM backends need the openai client: pip install openai") from None
    return OpenAI(
        base_url=endpoint_base_url(endpoint),
        api_key=endpoint_api_key(endpoint),
        timeout=float(endpoint.timeout_s),
        max_retries=0,
    )


#: Likely causes of HTTP statuses that are not worth retrying.
_STATUS_CAUSES = {
    400: "the endpoint refused the request as malformed (model parameters, response_format)",
    401: "the API key is missing or wrong (see the endpoint's api_key_env)",
    403: "the API key may not use this model or endpoint",
    404: "no such model or route: check endpoint.model and endpoint.base_url (it usually ends in /v1)",
    413: "the request is too large (the image or the knowledge context)",
    422: "the endpoint could not process the request's parameters",
}

_IMAGE_REFUSAL = re.compile(r"image|vision|multimodal|image_url", re.IGNORECASE)
_NOT_SUPPORTED = re.compile(r"not support|unsupported|does not accept|cannot process|invalid content type|"
                            r"only (?:text|string)|must be a string", re.IGNORECASE)


def classify_api_error(exc: BaseException, timeout_s: float) -> tuple[str, bool]:
    """``(one-line description, retryable)`` of an exception raised by an ``openai`` call.

    Timeouts, connection errors, HTTP 408, 429 and 5xx are retryable; other statuses are not and the
    description names their likely cause, as it does for a text-only model refusing an image (at any status).
    """
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return f"timed out after {timeout_s:g} s", True
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        why = _short(str(cause), 100) if cause is not None else _short(str(exc), 100)
        return f"connection failed ({why})", True
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = exc.body if exc.body is not None else exc.message
        raw = json.dumps(body) if not isinstance(body, str) else body
        text = f"HTTP {status}: {_short(raw, 120)}"
        if _IMAGE_REFUSAL.search(raw) and _NOT_SUPPORTED.search(raw):
            return f"{text} (likely cause: a text-only model that does not take images; use a vision model, or " \
                   "send_image off for a plumbing check)", False
        retryable = status >= 500 or status in (408, 429)
        if not retryable and status in _STATUS_CAUSES:
            text += f" (likely cause: {_STATUS_CAUSES[status]})"
        return text, retryable
    if isinstance(exc, openai.APIResponseValidationError):
        return f"unexpected response shape: {_short(str(exc), 120)}", True
    return f"{type(exc).__name__}: {_short(str(exc), 120)}", False


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds a server asked to wait (``Retry-After``: seconds or an HTTP date) in an ``openai`` error, if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max((when - datetime.datetime.now(when.tzinfo)).total_seconds(), 0.0)
    except (TypeError, ValueError, IndexError):
        return None


#: Jitter of the backoff waits (wall time only: it never touches a simulation's random streams).
_JITTER = random.Random()


def backoff_wait_s(endpoint: LLMEndpointConfig, attempt: int, exc: BaseException | None = None,
                   rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1`` after a failed ``attempt`` (1-based).

    The server's ``Retry-After`` when it sent one (capped at ``max_backoff_s``); otherwise exponential
    backoff ``backoff_s * 2**(attempt - 1)``, capped, with jitter (drawn in [half, all] of it) so that
    parallel clients do not retry in step.
    """
    asked = retry_after_s(exc) if exc is not None else None
    if asked is not None:
        return min(asked, endpoint.max_backoff_s)
    ceiling = min(endpoint.backoff_s * 2.0 ** (attempt - 1), endpoint.max_backoff_s)
    return ceiling * (rng or _JITTER).uniform(0.5, 1.0)


def reply_text(completion: Any) -> str:
    """The assistant text of a chat completion (raises ValueError when there is none)."""
    choices = getattr(completion, "choices", None)
    if not choices:
        raise ValueError("the reply has no choices")
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    if not isinstance(content, str) or not content.strip():
        raise ValueError("the reply has no text content")
    return content


def detect_llama_cpp(client: Any) -> bool:
    """Whether the server behind ``client`` is llama.cpp (llama-cpp-python or llama-server).

    Both list their models with an ``owned_by`` of ``"me"`` (llama-cpp-python) or
    ``"llamacpp"`` (llama-server). Any error answers False.
    """
    try:
        models = client.models.list()
        owners = {str(getattr(m, "owned_by", "")).lower() for m in models.data}
    except Exception as exc:  # noqa: BLE001 - detection is best effort
        log.debug("llama.cpp detection failed: %s", exc)
        return False
    return bool(owners & {"me", "llamacpp"})


# --- offline corpus ------------------------------------------------------------------------


def _load_phrase_banks(path: Path) -> tuple[dict[str, list[str]], dict[str, list[tuple[str, str]]]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CorpusError(f"{path}: cannot read the phrase banks: {_short(str(exc))}") from None
    if not isinstance(data, dict) or not isinstance(data.get("families"), dict) or not isinstance(data.get("aspects"), dict):
        raise CorpusError(f"{path}: expected mappings `families:` and `aspects:`")
    families: dict[str, list[str]] = {}
    for fam, anchors in data["families"].items():
        if anchors is None:
            anchors = []
        if not isinstance(anchors, list) or not all(isinstance(a, str) and a.strip() for a in anchors):
            raise CorpusError(f"{path}: families.{fam}: expected a list of anchor texts")
        families[str(fam)] = [a.strip() for a in anchors]
    if "generic" in families and families["generic"]:
        raise CorpusError(f"{path}: families.generic must have no anchors (it has a fixed family score)")
    phrases: dict[str, list[tuple[str, str]]] = {}
    for aspect in ASPECTS:
        banks = data["aspects"].get(aspect)
        if not isinstance(banks, dict):
            raise CorpusError(f"{path}: aspects.{aspect}: missing (every aspect of {', '.join(ASPECTS)} needs phrases)")
        rows: list[tuple[str, str]] = []
        for fam, items in banks.items():
            if fam not in families:
                raise CorpusError(f"{path}: aspects.{aspect}.{fam}: unknown family; known: {', '.join(families)}")
            if not isinstance(items, list) or not all(isinstance(s, str) and s.strip() for s in items):
                raise CorpusError(f"{path}: aspects.{aspect}.{fam}: expected a list of phrases")
            rows.extend((str(fam), " ".join(s.split())) for s in items)
        if not rows:
            raise CorpusError(f"{path}: aspects.{aspect}: no phrases")
        phrases[aspect] = rows
    unknown = sorted(set(data["aspects"]) - set(ASPECTS))
    if unknown:
        raise CorpusError(f"{path}: aspects: unknown aspect(s) {', '.join(map(str, unknown))}; known: {', '.join(ASPECTS)}")
    return families, phrases


class OfflineCorpus:
    """Phrase banks matched to the prompt by MiniLM embedding similarity (see the module docstring)."""

    name = "offline"

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else PHRASE_BANKS_PATH
        self.families, self.phrases = _load_phrase_banks(self.path)
        self.bank_sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()
        self._lock = threading.Lock()
        self._tables: dict[str, tuple[np.ndarray, list[str], list[str]]] | None = None
        self._anchors: tuple[np.ndarray, np.ndarray, list[str]] | None = None

    def _prepare(self) -> None:
        from sim.prompting.embedding import embed

        with self._lock:
            if self._tables is not None:
                return
            fams = [f for f, anchors in self.families.items() if anchors]
            texts = [a for f in fams for a in self.families[f]]
            owner = np.array([i for i, f in enumerate(fams) for _ in self.families[f]])
            anchors = (embed(texts), owner, fams)
            tables = {}
            for aspect, rows in self.phrases.items():
                tables[aspect] = (embed([t for _, t in rows]), [f for f, _ in rows], [t for _, t in rows])
            self._anchors, self._tables = anchors, tables

    def family_scores(self, query: np.ndarray) -> dict[str, float]:
        """Family -> score of a unit query vector (best anchor cosine; fixed for ``generic``)."""
        self._prepare()
        assert self._anchors is not None
        emb, owner, fams = self._anchors
        sims = emb @ np.asarray(query, dtype=np.float32)
        scores = {f: float(sims[owner == i].max()) for i, f in enumerate(fams)}
        for f, anchors in self.families.items():
            if not anchors:
                scores[f] = GENERIC_FAMILY_SCORE
        return scores

    def queries(self, prompt: str) -> dict[str, np.ndarray]:
        """The unit query vector used for each aspect."""
        from sim.prompting.embedding import embed

        scene, obj = split_prompt(prompt)
        full, v_obj, v_scene = embed([prompt.strip(), obj, scene])

        def mix(part: np.ndarray) -> np.ndarray:
            v = PART_WEIGHT * part + (1.0 - PART_WEIGHT) * full
            return v / max(float(np.linalg.norm(v)), 1e-12)

        q = {a: full for a in ASPECTS}
        q["object"], q["environment"] = mix(v_obj), mix(v_scene)
        return q

    def match(self, prompt: str) -> dict[str, tuple[str, str, float]]:
        """Aspect -> ``(phrase, family, score)`` of the best phrase for ``prompt``."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
        self._prepare()
        assert self._tables is not None
        out = {}
        for aspect, query in self.queries(prompt).items():
            emb, fams, texts = self._tables[aspect]
            fam_score = self.family_scores(query)
            scores = np.array([fam_score[f] for f in fams]) + PHRASE_WEIGHT * (emb @ query).astype(np.float64)
            best = int(np.argmax(scores))  # first maximum: deterministic tie-break
            out[aspect] = (texts[best], fams[best], float(scores[best]))
        return out

    def elements(self, prompt: str) -> dict[str, str]:
        return {aspect: phrase for aspect, (phrase, _, _) in self.match(prompt).items()}

    def cache_identity(self) -> dict[str, str]:
        return {"backend": self.name, "phrase_banks_sha256": self.bank_sha256}


# --- LLM corpus ----------------------------------------------------------------------------

SYSTEM_PROMPT = """You are a prompt engineer for the Stable Diffusion text-to-image model. A mobile user sends a short image prompt. You write one prompt element for each of six aspects; the elements are appended to the user's prompt to get a better image:
- "object": a description of the main object (appearance, details, pose)
- "environment": the setting or background around it
- "mood": the atmosphere or emotion of the scene
- "lighting": the light (time of day, light sources, quality of light)
- "quality": quality boosters (photographic or artistic terms such as "highly detailed, sharp focus")
- "negative": defects to avoid, comma-separated (such as "blurry, deformed"); they form the negative prompt
Keep every element consistent with the user's prompt and do not repeat the prompt itself.
OUTPUT FORMAT (strict): reply with exactly one JSON object and nothing else. It has exactly the six keys "object", "environment", "mood", "lighting", "quality", "negative". Every value is a single-line string of 2 to 25 words. No markdown, no code fences, no comments, no other keys."""

#: The two worked examples (user prompt -> assistant reply) that precede the real prompt.
FEW_SHOT_EXAMPLES: tuple[tuple[str, dict[str, str]], ...] = (
    (
        "A windmill with a field of tulips",
        {
            "object": "a traditional Dutch windmill with white sails above rows of red and yellow tulips",
            "environment": "in flat open countryside with a canal and a distant farmhouse",
            "mood": "cheerful and peaceful springtime atmosphere",
            "lighting": "soft morning sunlight under a clear blue sky",
            "quality": "landscape photography, wide angle, highly detailed, sharp focus, 8k",
            "negative": "blurry, distorted sails, oversaturated colours, watermark",
        },
    ),
    (
        "A cat with a red bow tie",
        {
            "object": "a fluffy grey tabby cat wearing a neat red silk bow tie",
            "environment": "sitting on a velvet armchair in a cozy living room",
            "mood": "charming and slightly mischievous",
            "lighting": "warm window light with soft shadows",
            "quality": "pet portrait photography, shallow depth of field, crisp fur detail, 8k",
            "negative": "extra paws, deformed face, blurry, low quality, watermark",
        },
    ),
)


def user_message(prompt: str) -> str:
    return f"Image prompt: {prompt.strip()}"


def corpus_messages(prompt: str) -> list[dict[str, str]]:
    """System prompt, the two worked examples, then ``prompt``."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for example_prompt, reply in FEW_SHOT_EXAMPLES:
        messages.append({"role": "user", "content": user_message(example_prompt)})
        messages.append({"role": "assistant", "content": json.dumps(reply)})
    messages.append({"role": "user", "content": user_message(prompt)})
    return messages


#: Regular expression of one element: 2-25 words separated by single spaces, no quotes,
#: backslashes or newlines (llama.cpp's JSON-schema converter turns it into grammar rules).
ELEMENT_PATTERN = r'^[^ "\\\n]+( [^ "\\\n]+){%d,%d}$' % (MIN_WORDS - 1, MAX_WORDS - 1)


def corpus_json_schema() -> dict[str, Any]:
    """JSON schema of a corpus reply (llama.cpp turns it into a decoding grammar).

    >>> import re
    >>> bool(re.match(ELEMENT_PATTERN, "soft morning light")), bool(re.match(ELEMENT_PATTERN, "light"))
    (True, False)
    """
    return {
        "type": "object",
        "properties": {a: {"type": "string", "pattern": ELEMENT_PATTERN} for a in ASPECTS},
        "required": list(ASPECTS),
        "additionalProperties": False,
    }


class EndpointClient:
    """What the LLM backends share: a lazily built ``openai`` client for ``self.endpoint`` and the
    once-per-endpoint decision whether requests carry a JSON schema (llama.cpp servers only)."""

    endpoint: LLMEndpointConfig
    base_url: str
    _client: Any = None
    _json_schema: bool | None = None
    #: How a backoff waits (tests replace it to count the waits instead).
    sleep = staticmethod(time.sleep)

    def failed_request(self, exc: BaseException, attempt: int, tries: int, what: str) -> tuple[str, bool]:
        """``(description, retryable)`` of a request that raised (:func:`classify_api_error`); a retryable
        failure is logged and, when another attempt follows, waited out (:func:`backoff_wait_s`)."""
        last, retryable = classify_api_error(exc, self.endpoint.timeout_s)
        if retryable:
            log.warning("%s attempt %d/%d failed: %s", what, attempt, tries, last)
            if attempt < tries:
                self.sleep(backoff_wait_s(self.endpoint, attempt, exc))
        return last, retryable

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = openai_client(self.endpoint)
        return self._client

    @cached_property
    def json_schema(self) -> bool:
        """Whether requests carry the JSON schema (decided once)."""
        if self._json_schema is not None:
            return bool(self._json_schema)
        found = detect_llama_cpp(self.client)
        if found:
            log.info("%s is a llama.cpp server: sending the JSON schema in response_format", self.base_url)
        return found

    def reply_schema(self) -> dict[str, Any]:
        """The JSON schema of a valid reply (sent only to servers that accept it)."""
        raise NotImplementedError

    def _response_format(self) -> dict[str, Any]:
        fmt: dict[str, Any] = {"type": "json_object"}
        if self.json_schema:
            fmt["schema"] = self.reply_schema()
        return fmt

    def request(self, messages: list[dict[str, Any]]) -> Any:
        """One chat completion (no retries here: callers count and bound their attempts)."""
        self.attempts += 1
        return self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            temperature=self.endpoint.temperature,
            max_tokens=self.max_tokens,
            response_format=self._response_format(),
        )


class LLMCorpus(EndpointClient):
    """Two-shot prompting of an OpenAI-compatible chat model (see the module docstring).

    ``json_schema``: add the corpus JSON schema to ``response_format``
    (``{"type": "json_object", "schema": ...}``, which llama.cpp servers enforce with a
    grammar); ``None`` (default) detects a llama.cpp server once, from the ``owned_by``
    of its ``/models`` listing, and adds the schema only there (hosted APIs reject unknown
    fields). ``max_tokens`` bounds each reply. ``client`` replaces the ``openai`` client
    (tests). ``attempts`` counts requests sent, ``failures`` prompts given up on, and
    ``rejected`` the replies rejected, per reason: ``malformed`` (not the required JSON shape),
    ``copied_example``, ``cut_off``, ``negative_not_defects`` (:func:`check_element_content`;
    a reply with several kinds of problem counts once for each).
    """

    name = "llm"

    def __init__(
        self,
        config: LLMEndpointConfig,
        *,
        json_schema: bool | None = None,
        max_tokens: int = 300,
        client: Any = None,
    ):
        self.config = config
        self.endpoint = config
        self.base_url = endpoint_base_url(config)
        self.model = config.model
        self.max_tokens = int(max_tokens)
        self._json_schema = json_schema
        self._client = client
        self.attempts = 0
        self.failures = 0
        self.rejected: Counter[str] = Counter()
        #: Per prompt (normalised), the model that answered, as the endpoint reported it.
        self.answered_by: dict[str, str] = {}

    def reply_schema(self) -> dict[str, Any]:
        return corpus_json_schema()

    def elements(self, prompt: str) -> dict[str, str]:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
        messages = corpus_messages(prompt)
        tries = self.config.max_retries + 1
        last = ""
        for attempt in range(1, tries + 1):
            try:
                completion = self.request(messages)
            except Exception as exc:  # noqa: BLE001 - classified; unknown errors are not retried
                last, retryable = self.failed_request(exc, attempt, tries, f"LLM corpus for {prompt!r}")
                if not retryable:
                    break
                continue
            text = ""
            try:
                text = reply_text(completion)
                elements = validate_elements(parse_json_object(text), prompt)
                # the model the endpoint says answered (it may differ from the one asked for), kept with the cache
                self.answered_by[_normalise_prompt(prompt)] = str(getattr(completion, "model", "") or "")
                return elements
            except ValueError as exc:
                if isinstance(exc, ContentRejection):
                    last = f"rejected reply ({exc})"
                    self.rejected.update({p.kind for p in exc.problems})
                else:
                    last = f"malformed reply ({exc})"
                    self.rejected["malformed"] += 1
                log.warning("LLM corpus attempt %d/%d for %r: %s", attempt, tries, prompt, last)
                messages = corpus_messages(prompt) + retry_feedback(text, exc, prompt)
        self.failures += 1
        raise CorpusError(
            f"LLM corpus failed for prompt {prompt.strip()!r} after {attempt} attempt(s) "
            f"(endpoint {self.base_url}, model {self.model}): {last}"
        )

    def cache_identity(self) -> dict[str, str]:
        return {"backend": self.name, "model": self.model, "base_url": self.base_url}


def retry_feedback(bad_reply: str, error: ValueError, prompt: str) -> list[dict[str, str]]:
    """The two messages appended for another attempt: the rejected reply, then what was wrong with it."""
    fix = f"Reply again with only the JSON object in the required format (six keys, single-line strings of " \
          f"{MIN_WORDS}-{MAX_WORDS} words)"
    if isinstance(error, ContentRejection):
        fix += f", every element written for the image prompt {prompt.strip()!r}"
    return [
        {"role": "assistant", "content": bad_reply[:2000] or "(empty)"},
        {"role": "user", "content": f"That reply was invalid: {error}. {fix}."},
    ]


# --- cache ---------------------------------------------------------------------------------


def _normalise_prompt(prompt: str) -> str:
    return " ".join(prompt.split())


class CachedCorpus:
    """An on-disk cache of another corpus: one JSON file per (backend identity, prompt).

    ``hits`` and ``misses`` count lookups. A hit never calls the wrapped corpus. Stored entries
    are checked again on reading (:func:`check_element_content`: the check may be newer than the
    entry); one that fails is logged, counted in ``rejected_entries`` and regenerated. Fresh
    elements that fail it are not written (:class:`CorpusError`).
    """

    def __init__(self, inner: Any, cache_dir: str | Path):
        self.inner = inner
        self.name = getattr(inner, "name", "corpus")
        self.cache_dir = Path(cache_dir)
        identity = inner.cache_identity() if hasattr(inner, "cache_identity") else {"backend": self.name}
        self.identity = dict(identity)
        self.hits = 0
        self.misses = 0
        self.rejected_entries = 0
        self._memory: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def key(self, prompt: str) -> str:
        payload = json.dumps({**self.identity, "prompt": _normalise_prompt(prompt)}, sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def path_for(self, prompt: str) -> Path:
        return self.cache_dir / f"{self.key(prompt)}.json"

    def _read(self, path: Path, prompt: str) -> dict[str, str] | None:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            elements = record["elements"]
            if set(elements) != set(ASPECTS) or not all(isinstance(v, str) for v in elements.values()):
                raise ValueError("elements do not hold the six aspects as strings")
            if record.get("prompt") != _normalise_prompt(prompt):
                raise ValueError("stored for another prompt")
            elements = {a: elements[a] for a in ASPECTS}
            check_element_content(elements, prompt)
            return elements
        except FileNotFoundError:
            return None
        except ContentRejection as exc:
            self.rejected_entries += 1
            log.warning("corpus cache file %s fails the content check (%s): regenerating it", path, _short(str(exc), 200))
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("corpus cache file %s is unusable (%s): regenerating it", path, _short(str(exc), 100))
            return None

    def _write(self, path: Path, prompt: str, elements: dict[str, str]) -> None:
        record = {**self.identity, "prompt": _normalise_prompt(prompt), "elements": elements}
        answered = getattr(self.inner, "answered_by", {}).get(_normalise_prompt(prompt))
        if answered:
            record["answered_by"] = answered
        write_json(path, record, indent=1)

    def elements(self, prompt: str) -> dict[str, str]:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
        key = self.key(prompt)
        with self._lock:
            cached = self._memory.get(key)
        if cached is None:
            cached = self._read(self.cache_dir / f"{key}.json", prompt)
        if cached is not None:
            self.hits += 1
            with self._lock:
                self._memory[key] = cached
            return dict(cached)
        self.misses += 1
        produced = self.inner.elements(prompt)
        missing = [a for a in ASPECTS if not isinstance(produced.get(a), str)]
        if missing:  # never cache an incomplete corpus
            raise CorpusError(f"{self.name} corpus returned no element for aspect(s) {', '.join(missing)}")
        elements = {a: produced[a] for a in ASPECTS}
        try:
            check_element_content(elements, prompt)
        except ContentRejection as exc:  # it would be rejected on every read: never cache it
            raise CorpusError(f"{self.name} corpus returned unusable elements for {prompt.strip()!r}: {exc}") from None
        self._write(self.cache_dir / f"{key}.json", prompt, elements)
        with self._lock:
            self._memory[key] = elements
        return dict(elements)


__all__ = [
    "FAMILIES",
    "FEW_SHOT_EXAMPLES",
    "PHRASE_BANKS_PATH",
    "PLACEHOLDER_API_KEY",
    "SYSTEM_PROMPT",
    "CachedCorpus",
    "ContentRejection",
    "CorpusError",
    "LLMCorpus",
    "OfflineCorpus",
    "check_element_content",
    "classify_api_error",
    "corpus_json_schema",
    "corpus_messages",
    "endpoint_api_key",
    "endpoint_base_url",
    "openai_client",
    "parse_json_object",
    "split_prompt",
    "strip_code_fences",
    "validate_elements",
]
