"""The paper's baseline ("Stable Diffusion"): a fixed number of images, equal power split."""

from __future__ import annotations

import numpy as np

from sim.decisions import (
    AgentContext,
    Provision,
    ProvisioningAgent,
    ProvisioningObservation,
)


class StaticProvisioning(ProvisioningAgent):
    """``n_images`` per user and round (default 4, the paper's baseline), ``P_total / Q`` each."""

    name = "static"
    per_observation = True

    def __init__(self, context: AgentContext, rng: np.random.Generator, n_images: int = 4):
        super().__init__(context, rng)
        if not 1 <= int(n_images) <= context.max_images:
            raise ValueError(f"n_images must be in 1..{context.max_images} (max_images_per_round), got {n_images}")
        self.n_images = int(n_images)

    def decide(self, obs: ProvisioningObservation) -> Provision:
        q = obs.n_users
        return Provision(np.array([self.n_images] * q, dtype=int), np.array([obs.p_total_w / q] * q, dtype=float))
