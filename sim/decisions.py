"""The types the world and its agents share: observations, decisions, the agent interfaces.

* A :class:`ProvisioningAgent` sees the users a MASP serves at one decision
  epoch (:class:`ProvisioningObservation`) and returns a :class:`Provision`:
  inference trials ``N_i`` and transmit power ``P_i`` per user.
* A :class:`PromptAgent` sees one request (:class:`PromptObservation`) and
  returns a prompt-engineering strategy id (0-6, the paper's Table II).
* :class:`AgentContext` is what an agent is told when it is built: the budget,
  ``N_max``, the scenario and the models the world runs on.

Agents are chosen in a scenario by registry name (:mod:`sim.registry`) with
parameters, and built by :func:`sim.backends.build_provisioning_agent` /
:func:`sim.backends.build_prompt_agent`, each with its own random stream.
:mod:`sim.agent_checker` checks that an agent keeps this contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.model.quality import N_STRATEGIES


@dataclass(frozen=True)
class AgentContext:
    """What the simulation tells an agent when it is built (fixed for a run)."""

    #: Total transmit power of the MASP, watts.
    p_total_w: float
    #: Most images per user and round (N_max).
    max_images: int
    #: The scenario object (read-only), for agents that model the world.
    scenario: Any = None
    #: The models the world's service rounds run on (a :class:`sim.model.service.ServiceModels`), for agents
    #: that model the world (the oracle): the same objects, not a copy built from the scenario.
    models: Any = None


@dataclass(frozen=True)
class ProvisioningObservation:
    """The users a MASP decides for at one epoch; arrays are indexed by user, in ``user_ids`` order."""

    time_s: float
    masp: str
    p_total_w: float
    max_images: int
    user_ids: np.ndarray
    prompts: tuple[str, ...]
    #: Prompt complexity feature in [0, 1] (see :func:`sim.model.quality.prompt_complexity`).
    complexities: np.ndarray
    distances_m: np.ndarray
    thresholds: np.ndarray
    #: Mean SNR at 1 W transmit power, dB (path loss, median shadowing, mean fading): the channel state.
    mean_snr_db_at_1w: np.ndarray
    #: Service rounds each user has had so far.
    rounds_done: np.ndarray
    #: Best received score so far (0 before the first round).
    best_scores: np.ndarray
    #: Seconds since each user arrived (its latency so far); zeros where unknown.
    waited_s: np.ndarray | None = None
    #: Images each user has received in earlier rounds (the N of its final QoE counts them); zeros where unknown.
    images_received: np.ndarray | None = None
    #: Users waiting at this MASP besides the ones decided for now.
    queue_length: int = 0
    #: Images queued for or running on this MASP's GPUs at the decision. The shipped world serves one batch
    #: at a time per MASP (the next decision comes after the batch's last image), so it is 0 there; it is
    #: part of the contract for worlds whose MASPs decide while earlier images are still generating.
    gpu_backlog: int = 0

    def __post_init__(self) -> None:
        for name in ("waited_s", "images_received"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros(len(self.user_ids)))

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
        """Raise ``ValueError`` naming the agent when the decision is malformed.

        The power split may break the budget (eq. 22 penalises it and the
        transmitter scales it down); :mod:`sim.agent_checker` checks feasibility.
        """
        shape = (obs.n_users,)
        if self.n_images.shape != shape or self.power_w.shape != shape:
            raise ValueError(
                f"provisioning agent {agent_name!r} returned shapes {self.n_images.shape} and "
                f"{self.power_w.shape}; expected {shape} (one entry per user)"
            )
        # one reduction each (NaN fails both power comparisons); without the ndarray methods' wrappers
        p, n = self.power_w, self.n_images
        low, high = np.minimum.reduce(p, axis=None, initial=0.0), np.maximum.reduce(p, axis=None, initial=0.0)
        if not (low >= 0 and high < np.inf):
            raise ValueError(f"provisioning agent {agent_name!r} returned a negative or non-finite power")
        fewest, most = np.minimum.reduce(n, axis=None, initial=0), np.maximum.reduce(n, axis=None, initial=0)
        if fewest < 0 or most > obs.max_images:
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
    #: Each decision depends on its observation alone (no state kept between decisions, no random draws), so
    #: a world's MASPs can be simulated apart and give the same decisions (:mod:`sim.world.sharding`).
    per_observation: bool = False

    def __init__(self, context: AgentContext, rng: np.random.Generator):
        self.context = context
        self.rng = rng

    @abstractmethod
    def decide(self, obs: ProvisioningObservation) -> Provision: ...


class PromptAgent(ABC):
    """Chooses a prompt-engineering strategy (0-6) per request."""

    name: str = "prompt"
    #: Each decision depends on its observation alone (no state kept between decisions, no random draws), so
    #: a world's MASPs can be simulated apart and give the same decisions (:mod:`sim.world.sharding`).
    per_observation: bool = False

    def __init__(self, context: AgentContext, rng: np.random.Generator):
        self.context = context
        self.rng = rng

    @abstractmethod
    def choose(self, obs: PromptObservation) -> int: ...


__all__ = [
    "AgentContext",
    "N_STRATEGIES",
    "PromptAgent",
    "PromptObservation",
    "Provision",
    "ProvisioningAgent",
    "ProvisioningObservation",
]
