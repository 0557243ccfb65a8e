"""The two decision seams and the registry that builds agents by name.

* A :class:`ProvisioningAgent` sees the users a MASP serves at one decision
  epoch (:class:`ProvisioningObservation`) and returns a :class:`Provision`:
  inference trials ``N_i`` and transmit power ``P_i`` per user.
* A :class:`PromptAgent` sees one request (:class:`PromptObservation`) and
  returns a prompt-engineering strategy id (0-6, the paper's Table II).

Agents are chosen in a scenario by registry name with parameters::

    provisioning_agent: {name: static, params: {n_images: 4}}
    prompt_agent: {name: empirical}

and built with :func:`make_provisioning_agent` / :func:`make_prompt_agent`,
which give every agent its own random stream.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from sim.quality import N_STRATEGIES


@dataclass(frozen=True)
class AgentContext:
    """What the simulation tells an agent when it is built (fixed for a run)."""

    #: Total transmit power of the MASP, watts.
    p_total_w: float
    #: Most images per user and round (N_max).
    max_images: int
    #: The scenario object (read-only), for agents that model the world.
    scenario: Any = None


@dataclass(frozen=True)
class ProvisioningObservation:
    """The users a MASP decides for at one epoch; arrays are indexed by user, in ``user_ids`` order."""

    time_s: float
    masp: str
    p_total_w: float
    max_images: int
    user_ids: np.ndarray
    prompts: tuple[str, ...]
    #: Prompt complexity feature in [0, 1] (see :func:`sim.quality.prompt_complexity`).
    complexities: np.ndarray
    distances_m: np.ndarray
    thresholds: np.ndarray
    #: Mean SNR at 1 W transmit power, dB (path loss, median shadowing, mean fading): the channel state.
    mean_snr_db_at_1w: np.ndarray
    #: Service rounds each user has had so far.
    rounds_done: np.ndarray
    #: Best received score so far (0 before the first round).
    best_scores: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_ids)


@dataclass(frozen=True)
class Provision:
    """A provisioning decision: images and transmit power per user."""

    n_images: np.ndarray
    power_w: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_images", np.asarray(self.n_images, dtype=int))
        object.__setattr__(self, "power_w", np.asarray(self.power_w, dtype=float))

    def check(self, obs: ProvisioningObservation, agent_name: str) -> None:
        """Raise ``ValueError`` naming the agent when the decision is malformed."""
        shape = (obs.n_users,)
        if self.n_images.shape != shape or self.power_w.shape != shape:
            raise ValueError(
                f"provisioning agent {agent_name!r} returned shapes {self.n_images.shape} and "
                f"{self.power_w.shape}; expected {shape} (one entry per user)"
            )
        if not np.all(np.isfinite(self.power_w)) or np.any(self.power_w < 0):
            raise ValueError(f"provisioning agent {agent_name!r} returned a negative or non-finite power")
        if np.any(self.n_images < 0) or np.any(self.n_images > obs.max_images):
            raise ValueError(
                f"provisioning agent {agent_name!r} returned n_images {self.n_images.tolist()} outside 0..{obs.max_images}"
            )


@dataclass(frozen=True)
class PromptObservation:
    """One request the MASP refines a prompt for."""

    user_id: int
    prompt: str
    complexity: float
    threshold: float
    #: Transmit power allocated to this user in this round, watts.
    power_w: float
    round_index: int
    #: Strategies used for this user in earlier rounds.
    history: tuple[int, ...] = field(default_factory=tuple)


class ProvisioningAgent(ABC):
    """Chooses ``(N_i, P_i)`` for the users served at a decision epoch."""

    name: str = "provisioning"

    def __init__(self, context: AgentContext, rng: np.random.Generator):
        self.context = context
        self.rng = rng

    @abstractmethod
    def decide(self, obs: ProvisioningObservation) -> Provision: ...


class PromptAgent(ABC):
    """Chooses a prompt-engineering strategy (0-6) per request."""

    name: str = "prompt"

    def __init__(self, context: AgentContext, rng: np.random.Generator):
        self.context = context
        self.rng = rng

    @abstractmethod
    def choose(self, obs: PromptObservation) -> int: ...


_PROVISIONING: dict[str, type[ProvisioningAgent]] = {}
_PROMPT: dict[str, type[PromptAgent]] = {}


def register_provisioning(name: str) -> Callable[[type[ProvisioningAgent]], type[ProvisioningAgent]]:
    """Class decorator adding a provisioning agent to the registry under ``name``."""

    def add(cls: type[ProvisioningAgent]) -> type[ProvisioningAgent]:
        if name in _PROVISIONING:
            raise ValueError(f"provisioning agent {name!r} is already registered")
        cls.name = name
        _PROVISIONING[name] = cls
        return cls

    return add


def register_prompt(name: str) -> Callable[[type[PromptAgent]], type[PromptAgent]]:
    """Class decorator adding a prompt agent to the registry under ``name``."""

    def add(cls: type[PromptAgent]) -> type[PromptAgent]:
        if name in _PROMPT:
            raise ValueError(f"prompt agent {name!r} is already registered")
        cls.name = name
        _PROMPT[name] = cls
        return cls

    return add


def provisioning_agents() -> list[str]:
    """Names of the registered provisioning agents."""
    _load_builtin_agents()
    return sorted(_PROVISIONING)


def prompt_agents() -> list[str]:
    """Names of the registered prompt agents."""
    _load_builtin_agents()
    return sorted(_PROMPT)


class AgentError(ValueError):
    """An agent that cannot be built (unknown name, bad parameters)."""


def _build(kind: str, registry: dict[str, type], name: str, params: dict[str, Any], context, rng):
    if name not in registry:
        raise AgentError(f"unknown {kind} agent {name!r}; known: {', '.join(sorted(registry))}")
    cls = registry[name]
    accepted = [
        p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "context", "rng")
    ]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) or "no parameters"
        raise AgentError(f"{kind} agent {name!r} does not take {', '.join(unknown)}; it takes {takes}")
    try:
        return cls(context, rng, **params)
    except (TypeError, ValueError) as err:
        raise AgentError(f"{kind} agent {name!r}: {err}") from None


def make_provisioning_agent(
    name: str, params: dict[str, Any], context: AgentContext, rng: np.random.Generator
) -> ProvisioningAgent:
    _load_builtin_agents()
    return _build("provisioning", _PROVISIONING, name, params, context, rng)


def make_prompt_agent(name: str, params: dict[str, Any], context: AgentContext, rng: np.random.Generator) -> PromptAgent:
    _load_builtin_agents()
    return _build("prompt", _PROMPT, name, params, context, rng)


def _load_builtin_agents() -> None:
    """Import the modules whose classes register themselves."""
    import agents.oracle  # noqa: F401
    import agents.prompt  # noqa: F401
    import agents.random  # noqa: F401
    import agents.learned  # noqa: F401
    import agents.prompt_learned  # noqa: F401
    import agents.static  # noqa: F401
