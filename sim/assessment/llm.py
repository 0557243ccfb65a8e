"""The LLM assessor: a vision chat model plays the AIGC user and scores what it received.

Any OpenAI-compatible chat endpoint with image input (OpenAI, vLLM, Ollama, llama.cpp's
server with a multimodal model, ...) through the ``openai`` client. One request per image:

**Role prompt.** The system message casts the model as a mobile user who asked for an image
of the prompt, received it over a wireless link, and rates it 0-10 (what the scale points
mean, that generation defects and transmission damage both count).

**The image.** The *received* bytes are decoded with the image's codec
(:func:`sim.generation.render.decode_image_checked`: the same decoder, with the same
leniency for damaged JPEG, that every other assessor uses) and the decoded pixels are
re-encoded as **PNG** and sent as a ``data:image/png;base64,...`` URL in an ``image_url``
content part. PNG is lossless, so the model sees exactly the pixels this simulator's user
sees; the received JPEG bytes themselves are *not* forwarded, because a damaged stream may
be refused or decoded differently by the server's decoder. Bytes that do not decode
score 0 (``decodable=False``) **without** calling the model.

**Retrieval.** A knowledge base of short Markdown documents (``sim/data/knowledge``: aesthetics
and composition, the human visual system, quality metrics, compression and transmission
artefacts, AIGC defects, colour and lighting, mobile viewing) is cut into ~500-character
chunks with ~100 characters of overlap at sentence boundaries, embedded once with
all-MiniLM-L6-v2 (:mod:`sim.prompting.embedding`; cached in memory per directory), and the
``rag_top_k`` chunks most cosine-similar to the prompt go into the system message with
their source file. The query is the prompt alone: the model is never told the measured damage.

**Memory.** The ``memory_size`` most recent ratings *of the same user* (``user_id``) are kept
as text (the prompt, the score and the reason this assessor gave; not the images) and
shown in the system message, which tells the model that they show its own taste and that
it may grow stricter (or more forgiving) with them. Only the model's own successful
ratings enter memory; ``user_id=None`` has no memory.

**Reply.** One JSON object ``{"score": <0-10>, "reason": "<one sentence>"}``; the request asks
for ``response_format={"type": "json_object"}`` (with a JSON schema on llama.cpp servers,
see :class:`LLMAssessor`). Parsing is tolerant of form and strict on content
(:func:`parse_score_reply`): fenced JSON and JSON inside prose are accepted, and so is a
plain ``score: 7.5`` line; a score outside [0, 10], a missing score or no reply is
*malformed*. Malformed replies, timeouts (``endpoint.timeout_s``), connection errors and
HTTP 408, 429 and 5xx are retried up to ``endpoint.max_retries`` times (a malformed reply is
shown back to the model with what was wrong), waiting between attempts as the server asks
(``Retry-After``) or with exponential backoff and jitter (``endpoint.backoff_s``, doubling, up to
``endpoint.max_backoff_s``). Other statuses, and a text-only model refusing the image, are not
retried: the failure names the likely cause (a wrong key, model or URL; no vision).

**Failure.** After the retries the failure is never hidden: with a fallback assessor the
result is the fallback's score with ``failed=True``, ``assessor=<fallback name>`` and the
LLM failure in ``detail`` (the world copies it to the trace's ``assessment_detail`` and the
run's ``run.log``); without one, ``score=0.0, failed=True, assessor="llm"``. The instance
counts failures (``failures``) and requests (``attempts``). After ``failure_budget`` failed
images in a run, ``on_failure_budget: stop`` raises :class:`FailureBudgetSpent` (the run ends,
its directory says why) and ``fallback`` stops asking the endpoint and scores the rest with the
fallback, marked failed.

``damage`` is ``1 - SSIM(sent, received)`` (:func:`sim.assessment.fidelity.ssim`) whenever the
received bytes decode.

>>> parse_score_reply('{"score": 7.5, "reason": "sharp and on topic"}')
(7.5, 'sharp and on topic')
>>> parse_score_reply('```json\\n{"score": 6, "reason": "ok"}\\n```')
(6.0, 'ok')
>>> parse_score_reply('Score: 8/10. Reason: lovely light.')
(8.0, 'lovely light.')
>>> parse_score_reply('{"score": 12, "reason": "wow"}')
Traceback (most recent call last):
...
ValueError: score 12 is outside 0-10
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import math
import re
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.assessment.base import Assessment, Assessor
from sim.assessment.fidelity import ssim
from sim.config import LLMAssessorConfig
from sim.generation.base import GeneratedImage
from sim.generation.render import decode_image_checked, encode_image
from sim.prompting.corpus import (
    EndpointClient,
    endpoint_base_url,
    reply_text,
    strip_code_fences,
)

log = logging.getLogger(__name__)

#: The knowledge base shipped with the simulator.
DEFAULT_KNOWLEDGE_DIR = Path(__file__).resolve().parent.parent / "data" / "knowledge"

#: Target characters per knowledge chunk, and characters carried over between neighbours.
CHUNK_CHARS, CHUNK_OVERLAP = 500, 100


class FailureBudgetSpent(RuntimeError):
    """The llm assessor failed on more images than its ``failure_budget`` allows (``on_failure_budget: stop``)."""


class AssessorError(ValueError):
    """An LLM assessor that cannot be set up (e.g. a missing knowledge directory)."""


# --- knowledge base ------------------------------------------------------------------------


_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+")


def _tail_words(text: str, n: int) -> str:
    """The last ``n`` characters of ``text``, starting at a word boundary."""
    if n <= 0:
        return ""
    if len(text) <= n:
        return text
    tail = text[-n:]
    return tail[tail.find(" ") + 1 :] if " " in tail else ""


def chunk_text(text: str, size: int = CHUNK_CHARS, overlap: int = CHUNK_OVERLAP) -> list[str]:
    """Cut ``text`` into chunks of about ``size`` characters at sentence boundaries.

    Each chunk after the first starts with the last ~``overlap`` characters (whole words) of
    the previous one; a single sentence longer than ``size`` is cut at word boundaries.
    Markdown headings are dropped (the caller keeps the document title).

    >>> text = " ".join(f"Sentence number {i} is here." for i in range(40))
    >>> chunks = chunk_text(text, size=120, overlap=40)
    >>> max(len(c) for c in chunks) <= 120
    True
    >>> chunks[1][:30] in chunks[0][-40:]
    True
    """
    body = " ".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    body = " ".join(body.split())
    if not body:
        return []
    sentences: list[str] = []
    for s in _SENTENCE_END.split(body):
        while len(s) > size:
            cut = s.rfind(" ", 0, size)
            cut = cut if cut > 0 else size
            sentences.append(s[:cut].strip())
            s = s[cut:].strip()
        if s:
            sentences.append(s)
    chunks: list[str] = []
    current: list[str] = []
    for s in sentences:
        if current and len(" ".join(current + [s])) > size:
            chunks.append(" ".join(current))
            # carry the last ~``overlap`` characters (whole words), never pushing the chunk past ``size``
            kept = _tail_words(_tail_words(chunks[-1], overlap), size - len(s) - 1)
            current = [kept] if kept else []
        current.append(s)
    if current:
        tail = " ".join(current)
        if not chunks or not chunks[-1].endswith(tail):
            chunks.append(tail)
    return chunks


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of the knowledge base."""

    source: str
    title: str
    text: str


def _title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip() or fallback
    return fallback


class KnowledgeBase:
    """Markdown documents of a directory, chunked; embedded lazily (once per process and directory)."""

    def __init__(self, directory: str | Path, size: int = CHUNK_CHARS, overlap: int = CHUNK_OVERLAP):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise AssessorError(f"knowledge base {self.directory}: no such directory (expected .md documents)")
        files = sorted(self.directory.glob("*.md"))
        if not files:
            raise AssessorError(f"knowledge base {self.directory}: no .md documents in it")
        chunks: list[Chunk] = []
        for f in files:
            text = f.read_text(encoding="utf-8")
            title = _title(text, f.stem)
            chunks.extend(Chunk(f.name, title, c) for c in chunk_text(text, size, overlap))
        if not chunks:
            raise AssessorError(f"knowledge base {self.directory}: the documents hold no text")
        self.chunks: tuple[Chunk, ...] = tuple(chunks)
        self._key = (str(self.directory.resolve()), size, overlap, tuple(c.text for c in self.chunks))

    @property
    def embeddings(self) -> np.ndarray:
        """(n_chunks, 384) unit vectors of ``"title: text"`` per chunk."""
        with _KB_LOCK:
            cached = _KB_EMBEDDINGS.get(self._key)
        if cached is None:
            from sim.prompting.embedding import embed

            cached = embed([f"{c.title}: {c.text}" for c in self.chunks])
            with _KB_LOCK:
                _KB_EMBEDDINGS[self._key] = cached
        return cached

    def retrieve(self, query: str, k: int) -> list[tuple[Chunk, float]]:
        """The ``k`` chunks most cosine-similar to ``query`` (best first; ties to the earlier chunk)."""
        if k <= 0:
            return []
        from sim.prompting.embedding import embed

        q = embed([query])[0]
        sims = self.embeddings @ q
        order = np.argsort(-sims, kind="stable")[:k]
        return [(self.chunks[i], float(sims[i])) for i in order]


_KB_LOCK = threading.Lock()
_KB_EMBEDDINGS: dict[tuple[Any, ...], np.ndarray] = {}


# --- reply parsing -------------------------------------------------------------------------

_SCORE_RE = re.compile(r"""\bscore\b["']?\s*[:=]\s*["']?(-?\d+(?:\.\d+)?)""", re.IGNORECASE)
_REASON_RE = re.compile(r"""\breason\b["']?\s*[:=]\s*["']?(.+)""", re.IGNORECASE)


def _check_score(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"score must be a number, got {type(value).__name__}")
    try:
        score = float(value)
    except ValueError:
        raise ValueError(f"score must be a number, got {value!r}") from None
    if not math.isfinite(score):
        raise ValueError(f"score must be finite, got {value!r}")
    if not 0.0 <= score <= 10.0:
        raise ValueError(f"score {value:g} is outside 0-10" if not isinstance(value, str) else f"score {value} is outside 0-10")
    return score


def parse_score_reply(text: str) -> tuple[float, str]:
    """``(score, reason)`` from the model's reply; ValueError when it is malformed.

    Accepts a JSON object (bare, fenced or inside prose) with a numeric ``score`` in
    [0, 10] and an optional string ``reason``; else a ``score: <number>`` phrase (with an
    optional ``reason: ...``). Out-of-range scores are malformed, never clamped.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty reply")
    body = strip_code_fences(text)
    data: Any = None
    start = body.find("{")
    if start >= 0:
        try:
            data, _ = json.JSONDecoder().raw_decode(body[start:])
        except json.JSONDecodeError:
            data = None
    if isinstance(data, dict):
        lowered = {str(k).lower(): v for k, v in data.items()}
        if "score" not in lowered:
            raise ValueError(f"the JSON reply has no 'score' (keys: {', '.join(map(str, data)) or 'none'})")
        score = _check_score(lowered["score"])
        reason = lowered.get("reason", "")
        if reason is None:
            reason = ""
        if not isinstance(reason, str):
            raise ValueError(f"reason must be a string, got {type(reason).__name__}")
        return score, " ".join(reason.split())
    m = _SCORE_RE.search(body)
    if m is None:
        raise ValueError("no score in the reply (expected {\"score\": <0-10>, \"reason\": \"...\"})")
    score = _check_score(m.group(1))
    r = _REASON_RE.search(body)
    if r is not None:
        reason = r.group(1)
    else:
        rest = (body[: m.start()] + " " + body[m.end() :]).strip(" \n.,;:/")
        reason = re.sub(r"^/\s*10\b[.,;:]?", "", rest).strip()
    return score, " ".join(reason.split())[:300]


# --- the assessor --------------------------------------------------------------------------

ROLE_PROMPT = """You are a mobile user of an AI image service. You asked for an image of "{prompt}". The image was generated on an edge server and sent to your phone over a wireless link, and you are now looking at the image you received.
Rate how satisfied you are with it on a scale from 0 to 10: 0 = unusable (nothing recognisable, or destroyed by corruption), 3 = wrong content or heavily damaged, 5 = recognisable but clearly flawed, 7 = good with visible defects, 8-9 = very good, you would keep and share it, 10 = flawless and exactly what you asked for.
Judge both whether it shows what you asked for and how good it looks, including generation defects (anatomy, hands, text, distorted objects) and damage from the transmission (blocks, streaks, colour bands, noise, missing parts)."""

MEMORY_PROMPT = """Your recent ratings (your own earlier verdicts on other images you received) show your personal taste and strictness. Stay consistent with them, and let them shift your strictness: after several good images you become stricter and expect more, after poor ones a merely decent image pleases you more, and you are quicker to notice defects you complained about before.
{entries}"""

KNOWLEDGE_PROMPT = """Background knowledge that may help you judge (retrieved for this request):
{entries}"""

FORMAT_PROMPT = """Reply with exactly one JSON object and nothing else: {"score": <number from 0 to 10>, "reason": "<one short sentence>"}"""


def score_json_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"score": {"type": "number"}, "reason": {"type": "string", "maxLength": 300}},
        "required": ["score", "reason"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class MemoryEntry:
    """One earlier rating of a user, as the model gave it."""

    prompt: str
    score: float
    reason: str


def png_data_url(pixels: np.ndarray) -> str:
    """``data:image/png;base64,...`` of HxWx3 uint8 pixels (lossless)."""
    return "data:image/png;base64," + base64.b64encode(encode_image(pixels, "png")).decode("ascii")


class LLMAssessor(EndpointClient):
    """A vision chat model playing the AIGC user (see the module docstring).

    ``fallback``: assessor whose score is returned (marked ``failed``) when the LLM fails
    after its retries. ``send_image=False`` is a text-only mode for endpoints without vision
    (it sends the same role prompt, knowledge and memory, and says the image cannot be
    shown): a plumbing check of the request/reply path, not a meaningful quality judge.
    ``json_schema``: add the reply's JSON schema to ``response_format`` (llama.cpp
    grammar); ``None`` detects a llama.cpp server from its ``/models`` listing.
    ``max_tokens`` bounds each reply. ``client`` replaces the ``openai`` client (tests).
    """

    name = "llm"

    def __init__(
        self,
        config: LLMAssessorConfig,
        fallback: Assessor | None = None,
        *,
        send_image: bool = True,
        json_schema: bool | None = None,
        max_tokens: int = 200,
        client: Any = None,
    ):
        self.config = config
        self.endpoint = config.endpoint
        self.fallback = fallback
        self.send_image = bool(send_image)
        self.max_tokens = int(max_tokens)
        self.base_url = endpoint_base_url(self.endpoint)
        self.model = self.endpoint.model
        self._json_schema = json_schema
        self._client = client
        self.knowledge: KnowledgeBase | None = None
        if config.rag_top_k > 0:
            directory = DEFAULT_KNOWLEDGE_DIR if config.knowledge == "default" else Path(config.knowledge)
            self.knowledge = KnowledgeBase(directory)
        self._memory: dict[int, deque[MemoryEntry]] = {}
        self._lock = threading.Lock()
        #: Requests sent to the endpoint.
        self.attempts = 0
        #: Images the LLM could not score (after retries); at ``config.failure_budget`` the endpoint is not asked again.
        self.failures = 0
        self.last_failure = ""

    # -- plumbing --

    def reply_schema(self) -> dict[str, Any]:
        return score_json_schema()

    # -- context --

    def retrieve(self, prompt: str) -> list[tuple[Chunk, float]]:
        """The knowledge chunks this assessor puts in the request for ``prompt``."""
        if self.knowledge is None:
            return []
        return self.knowledge.retrieve(prompt, self.config.rag_top_k)

    def memory(self, user_id: int | None) -> list[MemoryEntry]:
        """The remembered ratings of ``user_id`` (oldest first)."""
        if user_id is None or self.config.memory_size == 0:
            return []
        with self._lock:
            return list(self._memory.get(user_id, ()))

    def _remember(self, user_id: int | None, entry: MemoryEntry) -> None:
        if user_id is None or self.config.memory_size == 0:
            return
        with self._lock:
            self._memory.setdefault(user_id, deque(maxlen=self.config.memory_size)).append(entry)

    def build_messages(self, prompt: str, pixels: np.ndarray, user_id: int | None = None) -> list[dict[str, Any]]:
        """The chat messages for one rating (system: role, memory, knowledge, format; user: the image)."""
        prompt = " ".join(prompt.split())
        parts = [ROLE_PROMPT.format(prompt=prompt)]
        memory = self.memory(user_id)
        if memory:
            entries = "\n".join(
                f'- you asked for "{m.prompt}" and gave {m.score:g}/10: {m.reason or "(no reason given)"}' for m in memory
            )
            parts.append(MEMORY_PROMPT.format(entries=entries))
        retrieved = self.retrieve(prompt)
        if retrieved:
            entries = "\n".join(f"[{i}] ({c.source}, {c.title}) {c.text}" for i, (c, _) in enumerate(retrieved, 1))
            parts.append(KNOWLEDGE_PROMPT.format(entries=entries))
        parts.append(FORMAT_PROMPT)
        system = {"role": "system", "content": "\n\n".join(parts)}
        h, w = pixels.shape[:2]
        if self.send_image:
            content: Any = [
                {"type": "text", "text": f'This is the image you received for your request "{prompt}" ({w}x{h} pixels). Rate it.'},
                {"type": "image_url", "image_url": {"url": png_data_url(pixels)}},
            ]
        else:
            content = (
                f'You received a {w}x{h} pixel image for your request "{prompt}". The image cannot be shown in this '
                "text-only mode; rate what you would expect to receive for such a request."
            )
        return [system, {"role": "user", "content": content}]

    # -- assessment --

    def assess(self, sent: GeneratedImage, received: bytes, prompt: str, user_id: int | None = None) -> Assessment:
        pixels, why = decode_image_checked(received, sent.format, sent.pixels.shape)
        if pixels is None:
            return Assessment(score=0.0, decodable=False, damage=math.nan, detail=f"undecodable: {why}", assessor=self.name)
        damage = 0.0 if bytes(received) == sent.data else 1.0 - ssim(sent.pixels, pixels)
        if self.failures >= self.config.failure_budget:  # spent: the endpoint is not asked again this run
            if self.config.on_failure_budget == "stop":
                raise FailureBudgetSpent(
                    f"the llm assessor failed on {self.failures} image(s), its failure_budget "
                    f"({self.config.failure_budget}); last: {self.last_failure} (on_failure_budget: fallback "
                    "scores the rest with the fallback assessor instead)")
            return self._fail(sent, received, prompt, user_id, 0, "failure budget spent: endpoint not asked "
                              f"(last failure: {self.last_failure})", damage, count=False)
        try:
            messages = self.build_messages(prompt, pixels, user_id)
        except Exception as exc:  # noqa: BLE001 - e.g. the embedding model is missing: record it, do not crash
            return self._fail(sent, received, prompt, user_id, 0, f"could not build the request: {exc}", damage)
        base = list(messages)
        tries = self.endpoint.max_retries + 1
        last = ""
        attempt = 0
        for attempt in range(1, tries + 1):
            try:
                completion = self.request(messages)
            except Exception as exc:  # noqa: BLE001 - classified; unknown errors are not retried
                last, retryable = self.failed_request(exc, attempt, tries, "LLM assessor")
                if not retryable:
                    break
                continue
            text = ""
            try:
                text = reply_text(completion)
                score, reason = parse_score_reply(text)
            except ValueError as exc:
                last = f"malformed reply ({exc})"
                log.warning("LLM assessor attempt %d/%d: %s", attempt, tries, last)
                messages = base + [
                    {"role": "assistant", "content": text[:2000] or "(empty)"},
                    {
                        "role": "user",
                        "content": f"That reply was invalid: {exc}. Reply again with only the JSON object "
                        '{"score": <number from 0 to 10>, "reason": "<one short sentence>"}.',
                    },
                ]
                continue
            self._remember(user_id, MemoryEntry(" ".join(prompt.split()), score, reason))
            return Assessment(score=score, decodable=True, damage=damage, detail=reason, assessor=self.name)
        return self._fail(sent, received, prompt, user_id, attempt, last, damage)

    def _fail(
        self, sent: GeneratedImage, received: bytes, prompt: str, user_id: int | None, attempts: int, why: str,
        damage: float, count: bool = True,
    ) -> Assessment:
        detail = f"llm assessor failed after {attempts} attempt(s) (endpoint {self.base_url}, model {self.model}): {why}"
        if count:
            self.failures += 1
            self.last_failure = why
            log.warning(detail)
        if self.fallback is None:
            return Assessment(score=0.0, decodable=True, damage=damage, detail=detail, failed=True, assessor=self.name)
        fb_name = getattr(self.fallback, "name", type(self.fallback).__name__)
        try:
            verdict = self.fallback.assess(sent, received, prompt, user_id)
        except Exception as exc:  # noqa: BLE001 - the fallback failing too is recorded, not raised
            return Assessment(
                score=0.0,
                decodable=True,
                damage=damage,
                detail=f"{detail}; fallback {fb_name} failed too: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}",
                failed=True,
                assessor=self.name,
            )
        return dataclasses.replace(verdict, failed=True, assessor=fb_name, detail=f"{detail}; fallback {fb_name}: {verdict.detail}")


__all__ = [
    "DEFAULT_KNOWLEDGE_DIR",
    "AssessorError",
    "Chunk",
    "KnowledgeBase",
    "LLMAssessor",
    "MemoryEntry",
    "chunk_text",
    "parse_score_reply",
    "png_data_url",
]
