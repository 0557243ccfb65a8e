"""Every registered agent keeps the decision contract (sim.agent_checker), and the checker catches agents that do not."""

from __future__ import annotations

import numpy as np
import pytest

from sim.agent_checker import AgentContractError, check_prompt_agent, check_provisioning_agent
from sim.config import parse_scenario
from sim.decisions import PromptAgent, Provision, ProvisioningAgent
from sim.registry import PROMPT_AGENTS, PROVISIONING_AGENTS

SMALL = parse_scenario({
    "name": "contract",
    "generator": {"image_size": 32},
    "training": {
        "episode_length": 2, "eval_every_steps": 32, "eval_episodes": 1, "checkpoint_every_steps": 32,
        "hyperparameters": {"ppo": {"n_steps": 32, "batch_size": 16, "n_epochs": 1}},
    },
})


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, one_torch_thread):
    """Tiny trained policies, so that the ``learned`` agents can be checked too (a few seconds)."""
    pytest.importorskip("torch")
    pytest.importorskip("stable_baselines3")
    from sim.rl.prompt_training import train_prompt_policy
    from sim.rl.training import train

    out = tmp_path_factory.mktemp("contract")
    train(SMALL, "ppo", steps=32, seed=0, out=out / "prov", quiet=True)
    prompts = ["A beach with a boat", "A dog with a colorful collar", "A castle with a dragon"]
    result = train_prompt_policy(SMALL, "ppo", 64, seed=0, out=out / "prompt", train_prompts=prompts[:2],
                                 eval_prompts=prompts[2:], eval_every=64, eval_episodes_per_prompt=1,
                                 hyperparameters={"n_steps": 64, "batch_size": 32, "n_epochs": 1}, quiet=True)
    return {"provisioning:learned": {"checkpoint": str(out / "prov" / "checkpoints" / "latest")},
            "prompt:learned": {"checkpoint": str(result.checkpoint)}}


def _params(kind: str, name: str, request) -> dict:
    if name != "learned":
        return {}
    return request.getfixturevalue("checkpoints")[f"{kind}:{name}"]


@pytest.mark.parametrize("name", PROVISIONING_AGENTS.names())
def test_registered_provisioning_agent_keeps_the_contract(name, request):
    check_provisioning_agent(name, _params("provisioning", name, request), SMALL if name == "learned" else None)


@pytest.mark.parametrize("name", PROMPT_AGENTS.names())
def test_registered_prompt_agent_keeps_the_contract(name, request):
    check_prompt_agent(name, _params("prompt", name, request), SMALL if name == "learned" else None)


# -- agents that break the contract ---------------------------------------------------------------


class WrongShape(ProvisioningAgent):
    def decide(self, obs):
        return Provision(np.ones(obs.n_users + 1, dtype=int), np.zeros(obs.n_users + 1))


class OverBudget(ProvisioningAgent):
    def decide(self, obs):
        return Provision(np.ones(obs.n_users, dtype=int), np.full(obs.n_users, obs.p_total_w))


class NoImages(ProvisioningAgent):
    def decide(self, obs):
        return Provision(np.zeros(obs.n_users, dtype=int), np.full(obs.n_users, obs.p_total_w / obs.n_users))


class GlobalRandom(ProvisioningAgent):
    def decide(self, obs):
        return Provision(np.random.randint(1, 3, size=obs.n_users), np.full(obs.n_users, obs.p_total_w / obs.n_users))


class Mutates(ProvisioningAgent):
    def decide(self, obs):
        obs.thresholds[:] = 0.0
        return Provision(np.ones(obs.n_users, dtype=int), np.full(obs.n_users, obs.p_total_w / obs.n_users))


class ReturnsTuple(ProvisioningAgent):
    def decide(self, obs):
        return (np.ones(obs.n_users), np.ones(obs.n_users))


class StrategySeven(PromptAgent):
    def choose(self, obs):
        return 7


class StrategyFloat(PromptAgent):
    def choose(self, obs):
        return 3.0


@pytest.fixture
def registered():
    added = []

    def add(registry, name, cls):
        registry.register(name, cls)
        added.append((registry, name))
        return name

    yield add
    for registry, name in added:
        registry.unregister(name)


@pytest.mark.parametrize(
    "cls, message",
    [
        (WrongShape, r"shapes \((\d+),\) and \(\1,\) for \d+ users.*one entry per user"),
        (OverBudget, r"above P_total = 1 W.*scale the powers"),
        (NoImages, r"outside 1\.\.8.*at least one image"),
        (GlobalRandom, r"same seed decided differently.*self\.rng"),
        (Mutates, r"modified the observation's thresholds.*copy arrays"),
        (ReturnsTuple, r"returned tuple, not a Provision"),
    ],
)
def test_checker_says_what_is_wrong_and_how_to_fix_it(cls, message, registered):
    name = registered(PROVISIONING_AGENTS, f"test-{cls.__name__}", cls)
    with pytest.raises(AgentContractError, match=message):
        check_provisioning_agent(name)


@pytest.mark.parametrize("cls, message", [(StrategySeven, r"strategy 7.*0\.\.6"), (StrategyFloat, r"returned 3\.0 \(float\)")])
def test_checker_catches_bad_prompt_agents(cls, message, registered):
    name = registered(PROMPT_AGENTS, f"test-{cls.__name__}", cls)
    with pytest.raises(AgentContractError, match=message):
        check_prompt_agent(name)


def test_observations_come_from_the_world_with_first_and_later_rounds():
    from sim.agent_checker import default_check_scenario, provisioning_observations

    obs = provisioning_observations(default_check_scenario(), n=12)
    assert len(obs) == 12
    assert any(o.rounds_done.max() > 0 for o in obs) and any(o.rounds_done.max() == 0 for o in obs)
    assert len({o.n_users for o in obs}) > 1  # full batches and smaller ones
