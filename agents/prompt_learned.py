"""A trained prompt-engineering policy (GAIL or PPO) running inside the SimPy world.

In a scenario::

    prompt_agent:
      name: learned
      params: {checkpoint: results/train-prompt/gail-seed0/checkpoints/latest}

The checkpoint directory (written by :func:`sim.rl.prompt_training.train_prompt_policy`) holds the
policy (``model.zip``) and ``checkpoint.json`` with the observation layout it was trained on.
The world's :class:`~sim.decisions.PromptObservation` (prompt, power allocated this round,
strategies of the user's earlier rounds) is turned into that observation by
:func:`sim.rl.prompt_features.prompt_observation`, the function the training environment uses.
"""

from __future__ import annotations

import numpy as np

from sim.decisions import N_STRATEGIES, AgentContext, PromptAgent, PromptObservation
from sim.rl.checkpoints import load_prompt_checkpoint
from sim.rl.prompt_features import (
    ObservationSpec,
    prefetch_prompt_vectors,
    prompt_observation,
)


class LearnedPrompt(PromptAgent):
    """Runs a prompt-policy checkpoint (deterministic: the most likely strategy, by default)."""

    name = "learned"

    def __init__(self, context: AgentContext, rng: np.random.Generator, checkpoint: str = "", deterministic: bool = True,
                 trust: bool = False):
        super().__init__(context, rng)
        if not checkpoint:
            raise ValueError("the learned prompt agent needs params.checkpoint (a prompt-policy checkpoint directory)")
        # tensors only; ``trust`` lets a checkpoint without policy.pt be unpickled (sim.rl.checkpoints)
        self.meta, self.model = load_prompt_checkpoint(checkpoint, trust=bool(trust))
        self.spec = ObservationSpec.from_dict(self.meta["observation"])
        self.deterministic = bool(deterministic)
        self.per_observation = self.deterministic  # only a sampling policy draws from its stream
        scenario = context.scenario
        if scenario is not None and scenario.users.prompts:
            prefetch_prompt_vectors(list(scenario.users.prompts), self.spec.embedding)

    def choose(self, obs: PromptObservation) -> int:
        vector = prompt_observation(self.spec, obs.prompt, obs.power_w, obs.history)
        if self.deterministic:
            action, _ = self.model.predict(vector, deterministic=True)
        else:  # sample with the agent's own stream, not the policy's global torch generator
            import torch

            with torch.no_grad():
                dist = self.model.policy.get_distribution(self.model.policy.obs_to_tensor(vector)[0])
                probs = dist.distribution.probs.numpy().ravel()
            action = self.rng.choice(N_STRATEGIES, p=probs / probs.sum())
        return int(np.asarray(action).item())
