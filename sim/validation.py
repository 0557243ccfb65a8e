"""Checks beyond the scenario schema: what ``run`` would refuse later, found before any work.

:func:`scenario_problems` returns one line per problem, each naming the key that causes it: referenced
files that are missing or malformed (prompt sets, quality-model files, a generation cache), and agents
that cannot be built with their parameters (names are checked by the schema; parameters here, by building
each agent exactly as the world will). ``python -m sim validate`` prints them and exits 2; ``run``,
``compare`` and ``sweep`` refuse a scenario with any.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.config import AgentConfig, Scenario


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def scenario_problems(scenario: Scenario) -> list[str]:
    """Every problem ``run`` would meet with this (schema-valid) scenario's files and agents."""
    from sim.backends import (agent_context, build_provisioning_agent, build_prompt_agent, build_quality_model,
                              build_service_models)
    from sim.prompting.prompts import load_prompts

    problems: list[str] = []
    if scenario.users.prompt_set != "default":
        try:
            load_prompts(scenario.users.prompt_set)
        except (OSError, ValueError, KeyError, TypeError) as err:
            problems.append(f"users.prompt_set: {first_line(err)}")
    if scenario.generator.backend == "cache" and not Path(scenario.generator.cache.dir).is_dir():
        problems.append(f"generator.cache.dir: no such directory: {scenario.generator.cache.dir} "
                        "(python -m sim cache build fills one)")
    try:
        build_quality_model(scenario)
    except (OSError, ValueError, KeyError, TypeError) as err:
        problems.append(f"quality: {first_line(err)}")
        return problems  # agents need the models
    try:
        models = build_service_models(scenario)
    except (OSError, ValueError, KeyError, TypeError) as err:
        problems.append(f"channel: {first_line(err)}")
        return problems
    context = agent_context(scenario, models)
    agents: list[tuple[str, str, AgentConfig]] = [("provisioning_agent", "provisioning", scenario.provisioning_agent),
                                                  ("prompt_agent", "prompt", scenario.prompt_agent)]
    agents += [(f"compare.provisioning_agents[{i}]", "provisioning", a)
               for i, a in enumerate(scenario.compare.provisioning_agents)]
    for key, kind, agent in agents:
        build = build_provisioning_agent if kind == "provisioning" else build_prompt_agent
        try:
            build(agent.name, agent.params, context, np.random.default_rng(0))
        except Exception as err:  # noqa: BLE001 (an agent's own code: any failure is a problem to report)
            if isinstance(err, ModuleNotFoundError):
                raise
            problems.append(f"{key}: {first_line(err)}")
    return problems


__all__ = ["first_line", "scenario_problems"]
