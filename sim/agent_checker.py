"""Check that an agent keeps the contract of :mod:`sim.decisions` before the world runs it.

Like gymnasium's ``env_checker``: :func:`check_provisioning_agent` and
:func:`check_prompt_agent` build an agent twice with the same seed, put it in
front of a range of observations drawn from a scenario (one user up to the
epoch's maximum, first rounds and later rounds), and fail with an
:class:`AgentContractError` that says what is wrong and how to fix it. They check:

* provisioning agents: ``decide`` returns a :class:`~sim.decisions.Provision`
  with one entry per user; every ``N_i`` is an integer in ``1..N_max``; every
  power is finite and ``>= 0``; the split is feasible (``sum P_i <= P_total``,
  :func:`sim.model.service.exceeds_budget`); the observation is not modified;
* prompt agents: ``choose`` returns an integer strategy in ``0..6`` for first
  and later rounds;
Provisioning agents meet observations from the scenario's own world
(:func:`provisioning_observations`).

* both: the same seed gives the same decisions (the agent draws only from the
  ``rng`` it is given), and the agent has a ``name``.

``python -m sim check-agent NAME`` runs it from the command line; the contract
tests run it on every registered agent.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import numpy as np

from sim.backends import agent_context, build_prompt_agent, build_provisioning_agent
from sim.config import Scenario, parse_scenario
from sim.decisions import PromptObservation, Provision, ProvisioningObservation
from sim.model.quality import N_STRATEGIES, prompt_complexity
from sim.model.service import exceeds_budget
from sim.prompting.prompts import load_prompts
from sim.registry import PROMPT_AGENTS, PROVISIONING_AGENTS


class AgentContractError(ValueError):
    """An agent that breaks the contract of :mod:`sim.decisions`; the message says how to fix it."""


def _fail(agent_name: str, problem: str, fix: str) -> None:
    raise AgentContractError(f"agent {agent_name!r}: {problem}. Fix: {fix}")


def default_check_scenario() -> Scenario:
    """The scenario agents are checked in when none is given: 4 users, up to 3 per epoch, 1 W, N_max 8."""
    return parse_scenario({"name": "agent-check", "arrivals": {"n_users": 4}, "users": {"threshold": {"low": 6.0, "high": 8.5}}})


def provisioning_observations(scenario: Scenario, n: int = 12, seed: int = 0) -> list[ProvisioningObservation]:
    """``n`` decisions' observations from the scenario's own world (``sim/World-v0``, statistical delivery).

    Equal splits with 1, 3, 5, ... images per user in turn, so some users come
    back and some leave: first rounds and later ones, full batches and smaller
    ones, as the world poses them.
    """
    from sim.rl.world_env import WorldEnv  # the world, as the environment steps it

    env = WorldEnv(scenario, delivery="statistical" if scenario.generator.backend == "surrogate" else None)
    out: list[ProvisioningObservation] = []
    episode = seed
    env.reset(seed=episode)
    while len(out) < n:
        obs = env.current_observation
        out.append(obs)
        q = obs.n_users
        n_images = 1 + (2 * len(out)) % obs.max_images
        _, _, terminated, truncated, _ = env.step_provision(Provision(np.full(q, n_images), np.full(q, obs.p_total_w / q)))
        if terminated or truncated:
            episode += 1
            env.reset(seed=episode)
    return out


def prompt_observations(scenario: Scenario, n: int = 12, seed: int = 0) -> list[PromptObservation]:
    """``n`` requests drawn from ``scenario``: first rounds and later rounds with a history."""
    rng = np.random.default_rng(seed)
    pool = load_prompts(None if scenario.users.prompt_set == "default" else scenario.users.prompt_set)
    u = scenario.users
    out = []
    for k in range(n):
        text = pool[int(rng.integers(len(pool)))].text
        rounds = k % scenario.service.max_rounds
        out.append(
            PromptObservation(
                user_id=k,
                prompt=text,
                complexity=float(prompt_complexity(text)),
                threshold=float(rng.uniform(u.threshold.low, u.threshold.high)),
                power_w=float(scenario.masps[0].p_total_w / (1 + k % 3)),
                round_index=rounds,
                history=tuple(int(s) for s in rng.integers(N_STRATEGIES, size=rounds)),
            )
        )
    return out


def _snapshot(obs: ProvisioningObservation) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in vars(obs).items()}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    return a == b


def check_provision(decision: Any, obs: ProvisioningObservation, agent_name: str) -> Provision:
    """The checks of one decision (see the module docstring); returns it as a :class:`Provision`."""
    if not isinstance(decision, Provision):
        _fail(agent_name, f"decide() returned {type(decision).__name__}, not a Provision",
              "return sim.decisions.Provision(n_images, power_w) with one entry per user of the observation")
    q = obs.n_users
    if decision.n_images.shape != (q,) or decision.power_w.shape != (q,):
        _fail(agent_name, f"decide() returned shapes {decision.n_images.shape} and {decision.power_w.shape} for "
              f"{q} users", f"give n_images and power_w one entry per user, shape ({q},), in obs.user_ids order")
    raw_n = np.asarray(decision.n_images)
    if np.any(raw_n < 1) or np.any(raw_n > obs.max_images):
        _fail(agent_name, f"n_images {raw_n.tolist()} outside 1..{obs.max_images}",
              "give every user at least one image and at most obs.max_images (N_max)")
    power = decision.power_w
    if not np.all(np.isfinite(power)) or np.any(power < 0):
        _fail(agent_name, f"power_w {power.tolist()} has a negative or non-finite entry",
              "return finite powers >= 0 W")
    if exceeds_budget(power, obs.p_total_w):
        _fail(agent_name, f"the power split sums to {float(power.sum()):.6g} W, above P_total = {obs.p_total_w:g} W",
              "scale the powers so that they sum to at most obs.p_total_w (e.g. a softmax share of P_total)")
    return decision


def _agent_name(agent, fallback: str) -> str:
    name = getattr(agent, "name", None)
    if not isinstance(name, str) or not name:
        _fail(fallback, "it has no name", "give the class a `name` attribute (a short string)")
    return name


def _twins(build, name: str, params: dict[str, Any] | None, scenario: Scenario | None, seed: int):
    """``(scenario, agent, its twin built with the same seed, the agent's name)``."""
    scenario = scenario or default_check_scenario()
    context = agent_context(scenario)
    first = build(name, dict(params or {}), context, np.random.default_rng(seed))
    second = build(name, dict(params or {}), context, np.random.default_rng(seed))
    return scenario, first, second, _agent_name(first, name)


def check_provisioning_agent(
    name: str, params: dict[str, Any] | None = None, scenario: Scenario | None = None, seed: int = 0, n_observations: int = 12
) -> None:
    """Build the provisioning agent ``name`` (registered, or ``package.module:Class``) twice and check it.

    Raises :class:`AgentContractError` (or the builder's ``AgentError`` when it
    cannot be built) on the first problem; returns ``None`` when it keeps the contract.
    """
    scenario, first, second, label = _twins(build_provisioning_agent, name, params, scenario, seed)
    for obs in provisioning_observations(scenario, n_observations, seed):
        before = _snapshot(obs)
        a = check_provision(first.decide(obs), obs, label)
        for key, value in before.items():
            if not _same(value, getattr(obs, key)):
                _fail(label, f"decide() modified the observation's {key}", "copy arrays before changing them")
        b = check_provision(second.decide(replace(obs)), obs, label)
        if not (np.array_equal(a.n_images, b.n_images) and np.allclose(a.power_w, b.power_w, rtol=1e-12, atol=0)):
            _fail(label, "two agents built with the same seed decided differently",
                  "draw random numbers only from self.rng (the stream the simulator gives the agent), never from "
                  "numpy's or torch's global generators")


def check_prompt_agent(
    name: str, params: dict[str, Any] | None = None, scenario: Scenario | None = None, seed: int = 0, n_observations: int = 12
) -> None:
    """Build the prompt agent ``name`` (registered, or ``package.module:Class``) twice and check it."""
    scenario, first, second, label = _twins(build_prompt_agent, name, params, scenario, seed)
    for obs in prompt_observations(scenario, n_observations, seed):
        a, b = first.choose(obs), second.choose(obs)
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)):
            _fail(label, f"choose() returned {a!r} ({type(a).__name__})", f"return an int strategy in 0..{N_STRATEGIES - 1}")
        if not 0 <= int(a) < N_STRATEGIES:
            _fail(label, f"choose() returned strategy {int(a)}", f"return a strategy of Table II, 0..{N_STRATEGIES - 1}")
        if int(a) != int(b):
            _fail(label, "two agents built with the same seed chose differently",
                  "draw random numbers only from self.rng, never from a global generator")


def check_registered_agents(scenario: Scenario | None = None, params: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Check every registered agent (``params`` per ``"provisioning:NAME"`` / ``"prompt:NAME"``); returns what was checked."""
    params = params or {}
    checked = []
    for name in PROVISIONING_AGENTS.names():
        check_provisioning_agent(name, params.get(f"provisioning:{name}"), scenario)
        checked.append(f"provisioning:{name}")
    for name in PROMPT_AGENTS.names():
        check_prompt_agent(name, params.get(f"prompt:{name}"), scenario)
        checked.append(f"prompt:{name}")
    return checked


__all__ = [
    "AgentContractError",
    "check_prompt_agent",
    "check_provision",
    "check_provisioning_agent",
    "check_registered_agents",
    "default_check_scenario",
    "prompt_observations",
    "provisioning_observations",
]
