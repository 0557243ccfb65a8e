"""Gymnasium environment of the prompt-engineering decision: ``sim/Prompt-v0``.

:class:`PromptEnv` is the IRL prompt agent's problem of the D3PG paper as a fast
RL environment: every step is one service round of one user, the action is a
prompt-engineering strategy (Table II, 0 raw ... 6 + negative effects), and the
outcome is simulated with the world's models (:class:`~sim.model.quality.QualityModel`
for the generation score and the bit-error damage, :class:`~sim.model.channel.Channel`
for shadowing, fading and BER), as :class:`sim.rl.provisioning_env.ProvisioningEnv` does.

The observation is built by one module-level function, :func:`prompt_observation`,
from an :class:`ObservationSpec`; the prompt agent that runs a trained policy in
the SimPy world (:class:`agents.prompt_learned.LearnedPrompt`) calls the same
function with the world's :class:`~sim.decisions.PromptObservation`, so a policy
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
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim.backends import build_service_models
from sim.config import Scenario, default_scenario
from sim.dataset.demonstrations import DEFAULT_POWERS_W
from sim.generation.surrogate import typical_image_bits
from sim.model import service
from sim.model.quality import N_STRATEGIES, SCORE_MAX
from sim.prompting.prompts import load_prompts
from sim.rl.prompt_features import ObservationSpec, prefetch_prompt_vectors, prompt_observation
from sim.rl.registration import PROMPT_ENV_ID as ENV_ID
from sim.seeding import RandomStreams


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
    * QualityModel.retention`` (:func:`sim.model.service.received_scores`). The user keeps the best
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
    ``powers_w`` (default :data:`sim.dataset.demonstrations.DEFAULT_POWERS_W`);
    ``power_range_w`` (``(low, high)`` W, overrides ``powers_w``);
    ``power_scale_w``; ``max_rounds``; ``n_images`` (1); ``normalize_reward``
    (False); ``image_bits`` (default :func:`sim.generation.surrogate.typical_image_bits`);
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
        scenario: Scenario | None = None,
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
        if scenario is None:  # gym.make(ENV_ID) with no arguments: every default (sim.config.default_scenario)
            scenario = default_scenario()
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
        self.models = build_service_models(scenario)
        self.channel = self.models.channel
        self.quality = self.models.quality
        if image_bits is None:
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
        ber = self.models.image_ber(self._power, distance, shadow, fading)
        received = service.received_scores(qm, ber, gen, uniforms, self.image_bits)
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


def make_env(scenario: Scenario, prompts: Sequence[str] | None = None, **env_kwargs: Any) -> PromptEnv:
    """A :class:`PromptEnv` on ``prompts`` with ``env_kwargs`` (``None`` values mean the default)."""
    kwargs = {k: v for k, v in env_kwargs.items() if v is not None}
    if "power_range_w" in kwargs:
        kwargs["power_range_w"] = tuple(kwargs["power_range_w"])
    return PromptEnv(scenario, prompts=prompts, **kwargs)


__all__ = ["ENV_ID", "PromptEnv", "make_env"]
