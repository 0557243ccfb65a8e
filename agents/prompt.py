"""Prompt-engineering baselines: raw prompt, random strategy, always the richest strategy."""

from __future__ import annotations

import numpy as np

from sim.backends import build_service_models
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


class ModelOptimumPrompt(PromptAgent):
    """The quality model's best strategy for each request, as far as the prompt's text tells: the strategy with the
    highest chance that one image meets the user's threshold, from the complexity mean and the part of each
    strategy's prompt-specific effect the prompt's words fix (the rest, and the prompt's own offset, unknown:
    :meth:`sim.model.quality.QualityModel.text_known_success`). The ceiling a prompt policy that reads the text
    can reach. It uses the world's models (``context.models``), or builds them from the scenario when run alone."""

    name = "optimum"
    per_observation = True

    def __init__(self, context: AgentContext, rng: np.random.Generator, n_images: int = 1):
        super().__init__(context, rng)
        if int(n_images) < 1:
            raise ValueError(f"n_images must be >= 1, got {n_images}")
        if context.models is None and context.scenario is None:
            raise ValueError("the optimum prompt agent models the world: it needs the scenario in its AgentContext")
        models = context.models if context.models is not None else build_service_models(context.scenario)
        self.quality = models.quality
        self.n_images = int(n_images)

    def choose(self, obs: PromptObservation) -> int:
        chances = [self.quality.text_known_success(obs.prompt, s, obs.threshold, self.n_images)
                   for s in range(N_STRATEGIES)]
        return int(np.argmax(chances))
