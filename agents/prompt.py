"""Prompt-engineering baselines: raw prompt, random strategy, always the richest strategy."""

from __future__ import annotations

import numpy as np

from sim.decisions import N_STRATEGIES, AgentContext, PromptAgent, PromptObservation


class RawPrompt(PromptAgent):
    """No prompt engineering: strategy 0 (the paper's "default")."""

    name = "raw"
    per_observation = True

    def choose(self, obs: PromptObservation) -> int:
        return 0


class RandomPrompt(PromptAgent):
    """A strategy drawn uniformly from 0-6 for every request."""

    name = "random"

    def choose(self, obs: PromptObservation) -> int:
        return int(self.rng.integers(0, N_STRATEGIES))


class EmpiricalPrompt(PromptAgent):
    """Always the same strategy; by default 6, all aspects (the paper's "empirical" baseline)."""

    name = "empirical"
    per_observation = True

    def __init__(self, context: AgentContext, rng: np.random.Generator, strategy: int = 6):
        super().__init__(context, rng)
        if not 0 <= int(strategy) < N_STRATEGIES:
            raise ValueError(f"strategy must be in 0..{N_STRATEGIES - 1}, got {strategy}")
        self.strategy = int(strategy)

    def choose(self, obs: PromptObservation) -> int:
        return self.strategy
