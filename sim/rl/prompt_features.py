"""Observations of ``sim/Prompt-v0``, shared with the prompt agent that runs a trained policy in the world.

:func:`prompt_observation` builds the observation from an :class:`ObservationSpec`;
:class:`sim.rl.prompt_env.PromptEnv` and :class:`agents.prompt_learned.LearnedPrompt`
(with the world's :class:`~sim.decisions.PromptObservation`) call the same
function, so a policy sees the same features in both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from gymnasium import spaces

from sim.dataset.demonstrations import DEFAULT_POWERS_W
from sim.model.quality import N_STRATEGIES, content_words, prompt_complexity
from sim.prompting.prompts import prompt_category

#: Prompt representations: MiniLM ``tau(p)`` (384-d), a small hand-made vector, or both concatenated.
EMBEDDINGS = ("minilm", "features", "minilm+features")
#: Categories of the shipped prompt set, in this order in the feature vector, then ``other``.
CATEGORIES: tuple[str, ...] = ("animals", "cities", "fantasy", "food", "interiors", "nature", "people", "vehicles", "other")
#: Words at which the word-count feature saturates at 1.
_WORDS_SATURATE = 24
#: Upper Box bound of the normalised power ``P / power_scale_w`` (values are clipped into [0, this]).
POWER_FEATURE_HIGH = 4.0


def prompt_features(prompt: str) -> np.ndarray:
    """The hand-made prompt vector (float32, ``len(CATEGORIES) + 3`` = 12 entries, all in [0, 1]).

    ``[complexity, content words / 12, words / 24, category one-hot (9)]``:
    :func:`sim.model.quality.prompt_complexity`, the content-word count and the
    whitespace word count (both clipped at 1), and the prompt's category in the
    shipped prompt set (:data:`CATEGORIES`; a prompt not in it is ``other``).

    >>> v = prompt_features("A dog with a colorful collar")
    >>> v.shape, round(float(v[0]), 6), int(v[3:].argmax()) == CATEGORIES.index("animals")
    ((12,), 0.1, True)
    """
    c = prompt_complexity(prompt)
    n_content = len(content_words(prompt))
    n_words = len(prompt.split())
    category = prompt_category(prompt)
    onehot = np.zeros(len(CATEGORIES), dtype=np.float32)
    onehot[CATEGORIES.index(category) if category in CATEGORIES else len(CATEGORIES) - 1] = 1.0
    head = [c, min(1.0, n_content / 12.0), min(1.0, n_words / _WORDS_SATURATE)]
    return np.concatenate([np.asarray(head, dtype=np.float32), onehot])


_VECTORS: dict[tuple[str, str], np.ndarray] = {}


def prompt_vector(prompt: str, embedding: str) -> np.ndarray:
    """``tau(p)`` of ``prompt`` for ``embedding`` (see :data:`EMBEDDINGS`); cached per process.

    ``minilm``: :func:`sim.prompting.embedding.embed` (384-d, unit norm; loads the
    model on first use, ~10 s). ``features``: :func:`prompt_features` (12-d).
    ``minilm+features``: both, concatenated (396-d).
    """
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {', '.join(EMBEDDINGS)}, got {embedding!r}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    key = (embedding, prompt)
    hit = _VECTORS.get(key)
    if hit is None:
        prefetch_prompt_vectors([prompt], embedding)
        hit = _VECTORS[key]
    return hit


def prefetch_prompt_vectors(prompts: Sequence[str], embedding: str) -> None:
    """Compute and cache :func:`prompt_vector` of many prompts at once (one batched MiniLM call)."""
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {', '.join(EMBEDDINGS)}, got {embedding!r}")
    todo = list(dict.fromkeys(p for p in prompts if (embedding, p) not in _VECTORS))
    if not todo:
        return
    parts: list[np.ndarray] = []
    if "minilm" in embedding:
        from sim.prompting.embedding import embed

        parts.append(np.asarray(embed(todo), dtype=np.float32))
    if "features" in embedding:
        parts.append(np.stack([prompt_features(p) for p in todo]))
    rows = np.concatenate(parts, axis=1)
    for p, row in zip(todo, rows):
        row = row.astype(np.float32, copy=True)
        row.setflags(write=False)
        _VECTORS[(embedding, p)] = row


def embedding_dim(embedding: str) -> int:
    """Length of :func:`prompt_vector` for ``embedding``."""
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {', '.join(EMBEDDINGS)}, got {embedding!r}")
    from sim.prompting.embedding import EMBEDDING_DIM

    return (EMBEDDING_DIM if "minilm" in embedding else 0) + (len(CATEGORIES) + 3 if "features" in embedding else 0)


@dataclass(frozen=True)
class ObservationSpec:
    """How :func:`prompt_observation` lays out the IRL state (saved in checkpoints).

    ``embedding``: prompt representation (:data:`EMBEDDINGS`); ``history_len``:
    past rounds encoded (H); ``power_scale_w``: the power that maps to 1.
    """

    embedding: str = "features"
    history_len: int = 3
    power_scale_w: float = max(DEFAULT_POWERS_W)

    def __post_init__(self) -> None:
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {', '.join(EMBEDDINGS)}, got {self.embedding!r}")
        if isinstance(self.history_len, bool) or int(self.history_len) != self.history_len or self.history_len < 0:
            raise ValueError(f"history_len must be an integer >= 0, got {self.history_len!r}")
        if not (math.isfinite(float(self.power_scale_w)) and float(self.power_scale_w) > 0):
            raise ValueError(f"power_scale_w must be a positive number of watts, got {self.power_scale_w!r}")
        object.__setattr__(self, "history_len", int(self.history_len))
        object.__setattr__(self, "power_scale_w", float(self.power_scale_w))

    @property
    def dim(self) -> int:
        """Length of the observation vector."""
        return N_STRATEGIES * self.history_len + embedding_dim(self.embedding) + 1

    def space(self) -> spaces.Box:
        """The Box the observation lives in."""
        n_hist = N_STRATEGIES * self.history_len
        n_minilm = embedding_dim("minilm") if "minilm" in self.embedding else 0
        n_features = len(CATEGORIES) + 3 if "features" in self.embedding else 0
        low = np.concatenate([np.zeros(n_hist), -np.ones(n_minilm), np.zeros(n_features), [0.0]])
        high = np.concatenate([np.ones(n_hist + n_minilm + n_features), [POWER_FEATURE_HIGH]])
        return spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ObservationSpec":
        return cls(**{k: data[k] for k in ("embedding", "history_len", "power_scale_w") if k in data})


def history_onehot(history: Sequence[int], history_len: int) -> np.ndarray:
    """One-hot strategies of the last ``history_len`` rounds, most recent first; zeros where none.

    >>> history_onehot([0, 6], 3).reshape(3, 7).argmax(axis=1).tolist(), float(history_onehot([0, 6], 3)[14:].sum())
    ([6, 0, 0], 0.0)
    """
    out = np.zeros((history_len, N_STRATEGIES), dtype=np.float32)
    recent = list(history)[::-1][:history_len]
    for slot, s in enumerate(recent):
        s = int(s)
        if not 0 <= s < N_STRATEGIES:
            raise ValueError(f"history holds strategy {s}; expected 0-{N_STRATEGIES - 1}")
        out[slot, s] = 1.0
    return out.ravel()


def prompt_observation(spec: ObservationSpec, prompt: str, power_w: float, history: Sequence[int] = ()) -> np.ndarray:
    """The IRL state ``[history one-hots, tau(p), P / power_scale_w]`` as float32 (length ``spec.dim``).

    * ``[0, 7 H)``: block ``k`` is the one-hot strategy of the user's ``k``-th
      most recent round (:func:`history_onehot`); zeros before the first rounds.
    * ``[7 H, 7 H + E)``: :func:`prompt_vector` (MiniLM entries in [-1, 1],
      features in [0, 1]).
    * ``7 H + E``: the round's transmit power ``P_i / spec.power_scale_w``,
      clipped into [0, 4].

    The env and :class:`agents.prompt_learned.LearnedPrompt` both build their
    observations with this function.
    """
    p = float(power_w)
    if not math.isfinite(p) or p < 0:
        raise ValueError(f"power_w must be a finite number >= 0, got {power_w!r}")
    power = min(POWER_FEATURE_HIGH, p / spec.power_scale_w)
    return np.concatenate(
        [history_onehot(history, spec.history_len), prompt_vector(prompt, spec.embedding), np.array([power], np.float32)]
    ).astype(np.float32)


# ---------------------------------------------------------------------------
# one round's outcome (the world's models)


__all__ = [
    "CATEGORIES",
    "EMBEDDINGS",
    "POWER_FEATURE_HIGH",
    "ObservationSpec",
    "embedding_dim",
    "history_onehot",
    "prefetch_prompt_vectors",
    "prompt_features",
    "prompt_observation",
    "prompt_vector",
]
