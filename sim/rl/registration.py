"""Gymnasium registration of the simulator's environments (the one place they are registered)."""

from __future__ import annotations

import gymnasium as gym

#: One MASP's provisioning decision per step (:class:`sim.rl.provisioning_env.ProvisioningEnv`).
PROVISIONING_ENV_ID = "sim/Provisioning-v0"
#: One user's prompt strategy per service round (:class:`sim.rl.prompt_env.PromptEnv`).
PROMPT_ENV_ID = "sim/Prompt-v0"

#: The SimPy world itself, stepped from one provisioning decision to the next (:class:`sim.rl.world_env.WorldEnv`).
WORLD_ENV_ID = "sim/World-v0"

#: Environment ids and their entry points.
ENVIRONMENTS: dict[str, str] = {
    PROVISIONING_ENV_ID: "sim.rl.provisioning_env:ProvisioningEnv",
    PROMPT_ENV_ID: "sim.rl.prompt_env:PromptEnv",
    WORLD_ENV_ID: "sim.rl.world_env:WorldEnv",
}


def register_envs() -> None:
    """Register every environment of :data:`ENVIRONMENTS` with gymnasium (idempotent)."""
    for env_id, entry_point in ENVIRONMENTS.items():
        if env_id not in gym.envs.registry:
            gym.register(id=env_id, entry_point=entry_point)


__all__ = ["ENVIRONMENTS", "PROMPT_ENV_ID", "PROVISIONING_ENV_ID", "WORLD_ENV_ID", "register_envs"]
