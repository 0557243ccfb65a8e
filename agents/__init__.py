"""Decision agents: provisioning (images and power per user) and prompt engineering (strategy per request)."""

from agents.base import (
    AgentContext,
    AgentError,
    PromptAgent,
    PromptObservation,
    Provision,
    ProvisioningAgent,
    ProvisioningObservation,
    make_prompt_agent,
    make_provisioning_agent,
    prompt_agents,
    provisioning_agents,
)

__all__ = [
    "AgentContext",
    "AgentError",
    "PromptAgent",
    "PromptObservation",
    "Provision",
    "ProvisioningAgent",
    "ProvisioningObservation",
    "make_prompt_agent",
    "make_provisioning_agent",
    "prompt_agents",
    "provisioning_agents",
]
