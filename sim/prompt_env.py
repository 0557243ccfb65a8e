"""Gymnasium environment of the prompt-engineering decision: ``sim/Prompt-v0``.

:class:`PromptEnv` is the IRL prompt agent's problem of the D3PG paper as a fast
RL environment: every step is one service round of one user, the action is a
prompt-engineering strategy (Table II, 0 raw ... 6 + negative effects), and the
outcome is simulated with the world's models (:class:`~sim.quality.QualityModel`
for the generation score and the bit-error damage, :class:`~sim.channel.Channel`
for shadowing, fading and BER), as :class:`sim.envs.ProvisioningEnv` does.

The observation is built by one module-level function, :func:`prompt_observation`,
from an :class:`ObservationSpec`; the prompt agent that runs a trained policy in
the SimPy world (:class:`agents.prompt_learned.LearnedPrompt`) calls the same
function with the world's :class:`~agents.base.PromptObservation`, so a policy
sees the same features in both.

>>> from sim.config import parse_scenario
>>> env = PromptEnv(parse_scenario({"name": "doc"}), embedding="features", image_bits=60_000)
>>> obs, info = env.reset(seed=0)
>>> obs.shape, int(env.action_space.n)
((34,), 7)
>>> obs, reward, terminated, truncated, info = env.step(6)
>>> 0.0 <= reward <= 10.0, info["round"]
(True, 1)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim.backends import build_channel, build_quality_model
from sim.config import Scenario
from sim.demo_dataset import DEFAULT_POWERS_W
from sim.envs import received_scores
from sim.prompting.prompts import load_prompts
from sim.quality import N_STRATEGIES, SCORE_MAX, content_words, prompt_complexity
from sim.seeding import RandomStreams

ENV_ID = "sim/Prompt-v0"

#: Prompt representations: MiniLM ``tau(p)`` (384-d), a small hand-made vector, or both concatenated.
EMBEDDINGS = ("minilm", "features", "minilm+features")
#: Categories of the shipped prompt set, in this order in the feature vector, then ``other``.
CATEGORIES: tuple[str, ...] = ("animals", "cities", "fantasy", "food", "interiors", "nature", "people", "vehicles", "other")
#: Words at which the word-count feature saturates at 1.
_WORDS_SATURATE = 24
#: Upper Box bound of the normalised power ``P / power_scale_w`` (values are clipped into [0, this]).
POWER_FEATURE_HIGH = 4.0


# ---------------------------------------------------------------------------
# the observation (shared with agents.prompt_learned)


@lru_cache(maxsize=1)
def _shipped_categories() -> dict[str, str]:
    return {p.text.lower(): p.category for p in load_prompts()}


def prompt_features(prompt: str) -> np.ndarray:
    """The hand-made prompt vector (float32, ``len(CATEGORIES) + 3`` = 12 entries, all in [0, 1]).

    ``[complexity, content words / 12, words / 24, category one-hot (9)]``:
    :func:`sim.quality.prompt_complexity`, the content-word count and the
    whitespace word count (both clipped at 1), and the prompt's category in the
    shipped prompt set (:data:`CATEGORIES`; a prompt not in it is ``other``).

    >>> v = prompt_features("A dog with a colorful collar")
    >>> v.shape, round(float(v[0]), 6), int(v[3:].argmax()) == CATEGORIES.index("animals")
    ((12,), 0.1, True)
    """
    c = prompt_complexity(prompt)
    n_content = len(content_words(prompt))
    n_words = len(prompt.split())
    category = _shipped_categories().get(" ".join(prompt.lower().split()), "other")
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


# ---------------------------------------------------------------------------
# the environment


class PromptEnv(gym.Env):
    """One user's service rounds; the agent picks a prompt-engineering strategy each round.

    **Description.** An episode is one user: at ``reset`` the env draws the
    user's prompt (uniformly from ``prompts``, default the scenario's prompt
    set), quality threshold and distance (uniform over ``users.threshold`` and
    ``users.distance_m``). Every step is one service round: the round's transmit
    power ``P_i`` is drawn (uniformly from ``powers_w``, or uniformly on
    ``power_range_w``; the power a provisioning agent would allocate), the agent
    picks strategy ``s``, and the round is simulated with the world's models:
    ``n_images`` generation scores from ``QualityModel.sample_scores(prompt, s)``,
    one shadowing draw, the BER from ``Channel.ber_given_shadowing`` (per image
    from the instantaneous SNR under ``block_fading``), each image undecodable
    with ``QualityModel.p_undecodable`` (score 0), else scoring ``generation score
    * QualityModel.retention`` (:func:`received_scores`). The user keeps the best
    image; the user is served when it reaches the threshold.

    **Observation space.** ``Box(float32, (7 H + E + 1,))`` from
    :func:`prompt_observation`: the one-hot strategies of the user's last ``H``
    rounds (most recent first, zeros before the first), the prompt vector
    ``tau(p)`` (``embedding="minilm"``: all-MiniLM-L6-v2, E = 384;
    ``"features"``: complexity, content-word and word counts, category one-hot,
    E = 12; ``"minilm+features"``: both, E = 396) and the round's power
    ``P_i / power_scale_w`` (default scale: the largest power of ``powers_w``).
    The threshold, the distance, the prompt's random quality effect and the
    channel realisation are hidden (the paper's IRL state).

    **Action space.** ``Discrete(7)``: the strategy of Table II.

    **Reward.** The best received score of the round's images (one image by
    default), on the assessor's 0-10 scale, or divided by 10 into [0, 1] with
    ``normalize_reward=True``. Rounds are independent given the state (a
    round's draws do not depend on earlier actions), so the per-round reward is
    the objective: train with ``gamma = 0`` (the learners here do); with
    ``gamma > 0`` a return sums scores over rounds and would pay for *failing*
    (more rounds, more reward).

    **Starting state.** ``reset(seed=s)`` rebuilds every random stream from
    ``RandomStreams(s)`` (the user, the per-round powers, generation, shadowing,
    fading, bit errors and the episode's prompt-effect key); without a seed the
    root is drawn from the env's ``np_random``. ``options={"prompt": text}``
    fixes the prompt (the other draws stay the same). The draws of a round do
    not depend on the actions, so policies evaluated on the same seeds face the
    same noise (common random numbers).

    **Episode end.** Terminated when the best received score so far reaches the
    threshold, or after ``max_rounds`` rounds (default ``service.max_rounds``;
    the user leaves unserved, a terminal event of the service, so it is
    ``terminated`` too; ``info["satisfied"]`` tells which). Never truncated.

    **Arguments.** ``scenario``; ``prompts`` (raw prompts to draw from, e.g. a
    training split); ``history_len`` (H, 3); ``embedding`` (``"features"``);
    ``powers_w`` (default :data:`sim.demo_dataset.DEFAULT_POWERS_W`);
    ``power_range_w`` (``(low, high)`` W, overrides ``powers_w``);
    ``power_scale_w``; ``max_rounds``; ``n_images`` (1); ``normalize_reward``
    (False); ``image_bits`` (default :func:`sim.envs.typical_image_bits`);
    ``render_mode`` (``None`` or ``"ansi"``).

    **Info.** ``prompt``, ``threshold``, ``distance_m``, ``power_w`` (of the
    next round), ``round`` (rounds done), ``history``, ``best_score``,
    ``satisfied``; after a step also ``strategy``, ``received_score``,
    ``generation_score``, ``ber``, ``round_power_w``, ``success`` (this round's
    score reached the threshold).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        scenario: Scenario,
        prompts: Sequence[str] | None = None,
        history_len: int = 3,
        embedding: str = "features",
        powers_w: Sequence[float] | None = None,
        power_range_w: tuple[float, float] | None = None,
        power_scale_w: float | None = None,
        max_rounds: int | None = None,
        n_images: int = 1,
        normalize_reward: bool = False,
        image_bits: float | None = None,
        render_mode: str | None = None,
    ):
        if not isinstance(scenario, Scenario):
            raise TypeError(f"scenario must be a sim.config.Scenario, got {type(scenario).__name__}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.scenario = scenario
        if prompts is None:
            pool = load_prompts(None if scenario.users.prompt_set == "default" else scenario.users.prompt_set)
            prompts = [p.text for p in pool]
        self.prompts = [str(p) for p in prompts]
        if not self.prompts or not all(p.strip() for p in self.prompts):
            raise ValueError("prompts must be a non-empty list of non-empty strings")
        if power_range_w is not None:
            lo, hi = (float(x) for x in power_range_w)
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
                raise ValueError(f"power_range_w must be (low, high) with 0 < low <= high, got {power_range_w!r}")
            self.power_range_w: tuple[float, float] | None = (lo, hi)
            self.powers_w: tuple[float, ...] = ()
            top = hi
        else:
            levels = tuple(float(p) for p in (DEFAULT_POWERS_W if powers_w is None else powers_w))
            if not levels or not all(math.isfinite(p) and p > 0 for p in levels):
                raise ValueError(f"powers_w must be powers > 0 W, got {powers_w!r}")
            self.power_range_w, self.powers_w, top = None, levels, max(levels)
        self.obs_spec = ObservationSpec(embedding, history_len, top if power_scale_w is None else power_scale_w)
        self.max_rounds = int(scenario.service.max_rounds if max_rounds is None else max_rounds)
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
        if isinstance(n_images, bool) or int(n_images) != n_images or n_images < 1:
            raise ValueError(f"n_images must be an integer >= 1, got {n_images!r}")
        self.n_images = int(n_images)
        self.normalize_reward = bool(normalize_reward)
        self.render_mode = render_mode
        self.channel = build_channel(scenario)
        self.quality = build_quality_model(scenario)
        self.block_fading = scenario.channel.ber_model == "block_fading"
        if image_bits is None:
            from sim.envs import typical_image_bits

            image_bits = typical_image_bits(scenario)
        self.image_bits = float(image_bits)
        if not (math.isfinite(self.image_bits) and self.image_bits > 0):
            raise ValueError(f"image_bits must be a positive number, got {image_bits!r}")
        prefetch_prompt_vectors(self.prompts, embedding)

        self.observation_space = self.obs_spec.space()
        self.action_space = spaces.Discrete(N_STRATEGIES)

        self._streams: RandomStreams | None = None
        self._key = 0
        self._user: dict[str, Any] = {}
        self._history: list[int] = []
        self._best = 0.0
        self._power = 0.0
        self._last: dict[str, Any] = {}

    # -- helpers -------------------------------------------------------------------

    def env_kwargs(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this env for a scenario (JSON-friendly)."""
        return {
            "history_len": self.obs_spec.history_len,
            "embedding": self.obs_spec.embedding,
            "powers_w": list(self.powers_w) or None,
            "power_range_w": list(self.power_range_w) if self.power_range_w else None,
            "power_scale_w": self.obs_spec.power_scale_w,
            "max_rounds": self.max_rounds,
            "n_images": self.n_images,
            "normalize_reward": self.normalize_reward,
            "image_bits": self.image_bits,
        }

    def _draw_power(self, round_index: int) -> float:
        rng = self._streams.rng("provisioning_agent", round_index)
        if self.power_range_w is not None:
            return float(rng.uniform(*self.power_range_w))
        return float(self.powers_w[int(rng.integers(len(self.powers_w)))])

    def _observe(self) -> np.ndarray:
        return prompt_observation(self.obs_spec, self._user["prompt"], self._power, self._history)

    def _info(self) -> dict[str, Any]:
        return {
            **self._user,
            "power_w": self._power,
            "round": len(self._history),
            "history": tuple(self._history),
            "best_score": self._best,
            "satisfied": self._best >= self._user["threshold"],
        }

    @property
    def context(self) -> dict[str, Any]:
        """What the next step decides for: prompt, threshold, distance, power, round, history (as in ``info``)."""
        if not self._user:
            raise RuntimeError("call reset() first")
        return self._info()

    # -- gymnasium API ------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        root = int(seed) if seed is not None else int(self.np_random.integers(2**31))
        self._streams = RandomStreams(root)
        self._key = self._streams.integer_seed("prompt_effect")
        rng = self._streams.rng("users", 0)
        index = int(rng.integers(len(self.prompts)))
        cfg = self.scenario.users
        threshold = float(rng.uniform(cfg.threshold.low, cfg.threshold.high))
        distance = float(rng.uniform(cfg.distance_m.low, cfg.distance_m.high))
        prompt = self.prompts[index]
        if options and options.get("prompt") is not None:
            prompt = str(options["prompt"])
            if not prompt.strip():
                raise ValueError("options['prompt'] must be a non-empty string")
        self._user = {"prompt": prompt, "threshold": threshold, "distance_m": distance, "root_seed": root}
        self._history = []
        self._best = 0.0
        self._power = self._draw_power(0)
        self._last = {}
        return self._observe(), self._info()

    def step(self, action):
        if self._streams is None:
            raise RuntimeError("call reset() before step()")
        try:
            strategy = int(np.asarray(action).item())
        except (TypeError, ValueError):
            strategy = -1
        if not (np.size(action) == 1 and strategy == np.asarray(action).item() and 0 <= strategy < N_STRATEGIES):
            raise ValueError(f"action must be a strategy in 0..{N_STRATEGIES - 1}, got {action!r}")
        r = len(self._history)
        qm, ch, k = self.quality, self.channel, self.n_images
        prompt, distance = self._user["prompt"], self._user["distance_m"]
        gen = qm.sample_scores(prompt, strategy, self._streams.rng("generation", r), k, key=self._key)
        shadow = float(ch.draw_shadowing_db(1, self._streams.rng("shadowing", r))[0])
        fading = np.asarray(ch.draw_fading_gain(k, self._streams.rng("fading", r)), dtype=float)
        uniforms = self._streams.rng("bit_errors", r).random(k)
        received, ber = received_scores(
            qm, ch, gen, self._power, distance, shadow, fading, uniforms, self.image_bits, self.block_fading
        )
        best = int(np.argmax(received))
        score = float(received[best])
        round_power = self._power
        self._history.append(strategy)
        self._best = max(self._best, score)
        satisfied = self._best >= self._user["threshold"]
        terminated = bool(satisfied or len(self._history) >= self.max_rounds)
        self._power = self._draw_power(len(self._history))
        info = {
            **self._info(),
            "strategy": strategy,
            "received_score": score,
            "generation_score": float(gen[best]),
            "ber": float(ber[best]),
            "round_power_w": round_power,
            "success": score >= self._user["threshold"],
        }
        self._last = info
        reward = score / SCORE_MAX if self.normalize_reward else score
        return self._observe(), float(reward), terminated, False, info

    def render(self):
        if self.render_mode != "ansi":
            return None
        if not self._last:
            return "no step yet\n"
        i = self._last
        return (
            f"round {i['round']}: strategy {i['strategy']} at {i['round_power_w']:.3f} W -> received "
            f"{i['received_score']:.2f} (generated {i['generation_score']:.2f}, BER {i['ber']:.2e}); "
            f"threshold {i['threshold']:.2f}, best {i['best_score']:.2f}\n"
        )


def register_envs() -> None:
    """Register ``sim/Prompt-v0`` with gymnasium (idempotent)."""
    if ENV_ID not in gym.envs.registry:
        gym.register(id=ENV_ID, entry_point="sim.prompt_env:PromptEnv")


register_envs()

__all__ = [
    "CATEGORIES",
    "EMBEDDINGS",
    "ENV_ID",
    "ObservationSpec",
    "PromptEnv",
    "embedding_dim",
    "history_onehot",
    "prefetch_prompt_vectors",
    "prompt_features",
    "prompt_observation",
    "prompt_vector",
    "register_envs",
]
