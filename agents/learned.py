"""A trained provisioning policy (PPO, SAC, D3PG, DDPG) running inside the SimPy world.

In a scenario::

    provisioning_agent:
      name: learned
      params: {checkpoint: results/train/d3pg-seed0/checkpoints/latest}

The checkpoint directory (written by ``python -m sim train``) says which
algorithm it holds and the environment's shape. The world's observation is
turned into the training environment's vector by
:func:`sim.rl.features.observation_vector` and the action back into ``(N_i, P_i)`` by
:func:`sim.rl.features.action_to_provision`: the same code the environment uses. An
epoch with fewer users than the policy was trained for is padded with empty
users, whose share of the power is given back to the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sim.decisions import (
    AgentContext,
    Provision,
    ProvisioningAgent,
    ProvisioningObservation,
)
from sim.rl.checkpoints import CHECKPOINT_META, load_model
from sim.rl.features import batch_provision, observation_vector, world_observation_vector
from sim.rl.registration import WORLD_ENV_ID


class LearnedProvisioning(ProvisioningAgent):
    """Runs a checkpoint of ``python -m sim train`` (deterministic actions by default)."""

    name = "learned"

    def __init__(self, context: AgentContext, rng: np.random.Generator, checkpoint: str = "", deterministic: bool = True,
                 trust: bool = False):
        super().__init__(context, rng)
        directory = Path(checkpoint)
        meta_path = directory / CHECKPOINT_META
        if not checkpoint or not meta_path.exists():
            raise ValueError(f"checkpoint {checkpoint!r} is not a training checkpoint directory (no {CHECKPOINT_META})")
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if self.meta["max_images"] > context.max_images:
            raise ValueError(
                f"the policy was trained with max_images_per_round {self.meta['max_images']}, "
                f"more than this scenario's {context.max_images}"
            )
        # tensors only; ``trust`` lets an SB3 checkpoint without policy.pt be unpickled (sim.rl.checkpoints)
        self.model = load_model(self.meta["algorithm"], directory, trust=bool(trust))
        self.deterministic = bool(deterministic)
        self.per_observation = self.deterministic  # a deterministic policy of a fixed checkpoint

    def decide(self, obs: ProvisioningObservation) -> Provision:
        q = int(self.meta["n_users"])
        if obs.n_users > q:
            raise ValueError(f"the policy decides for at most {q} users per epoch, got {obs.n_users}")
        if self.meta.get("env") == WORLD_ENV_ID:
            vector = world_observation_vector(obs, self.context.scenario, n_users=q)
        else:
            vector = observation_vector(obs, self.context.scenario, n_users=q)
        action, _ = self.model.predict(vector, deterministic=self.deterministic)
        return batch_provision(action, obs.n_users, self.meta["max_images"], obs.p_total_w, self.meta["action_mapping"])
