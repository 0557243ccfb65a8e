"""Uniformly random provisioning: a lower reference for learning agents."""

from __future__ import annotations

import numpy as np

from sim.decisions import (
    AgentContext,
    Provision,
    ProvisioningAgent,
    ProvisioningObservation,
)


class RandomProvisioning(ProvisioningAgent):
    """``N_i`` uniform on ``1..max_images``; power split ``w ~ Dirichlet(1, ..., 1)`` of ``P_total``."""

    name = "random"

    def __init__(self, context: AgentContext, rng: np.random.Generator, max_images: int | None = None):
        super().__init__(context, rng)
        self.max_images = int(max_images or context.max_images)
        if not 1 <= self.max_images <= context.max_images:
            raise ValueError(f"max_images must be in 1..{context.max_images}, got {max_images}")

    def decide(self, obs: ProvisioningObservation) -> Provision:
        q = obs.n_users
        n = self.rng.integers(1, self.max_images + 1, size=q)
        weights = self.rng.dirichlet(np.ones(q))
        return Provision(n, weights * obs.p_total_w)
