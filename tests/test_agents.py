"""Agent registry and the baseline agents."""

from __future__ import annotations

import numpy as np
import pytest

from sim.backends import AgentError, build_prompt_agent, build_provisioning_agent
from sim.decisions import (
    AgentContext,
    PromptObservation,
    Provision,
    ProvisioningObservation,
)
from sim.registry import PROMPT_AGENTS, PROVISIONING_AGENTS

CTX = AgentContext(p_total_w=2.0, max_images=8)


def _obs(q: int = 3) -> ProvisioningObservation:
    return ProvisioningObservation(
        time_s=0.0,
        masp="m",
        p_total_w=2.0,
        max_images=8,
        user_ids=np.arange(q),
        prompts=tuple(f"A beach with a boat {i}" for i in range(q)),
        complexities=np.full(q, 0.3),
        distances_m=np.linspace(50, 150, q),
        thresholds=np.full(q, 8.0),
        mean_snr_db_at_1w=np.full(q, 30.0),
        rounds_done=np.zeros(q, dtype=int),
        best_scores=np.zeros(q),
    )


def _prompt_obs() -> PromptObservation:
    return PromptObservation(user_id=0, prompt="A dog with a collar", complexity=0.2, threshold=8.0, power_w=0.5, round_index=0)


def test_registries_list_builtins():
    assert {"static", "random"} <= set(PROVISIONING_AGENTS.names())
    assert {"raw", "random", "empirical"} <= set(PROMPT_AGENTS.names())


def test_static_is_the_paper_baseline():
    agent = build_provisioning_agent("static", {}, CTX, np.random.default_rng(0))
    d = agent.decide(_obs(3))
    assert d.n_images.tolist() == [4, 4, 4]
    assert np.allclose(d.power_w, 2.0 / 3)
    d.check(_obs(3), agent.name)


def test_random_is_feasible_and_seeded():
    a = build_provisioning_agent("random", {}, CTX, np.random.default_rng(1))
    b = build_provisioning_agent("random", {}, CTX, np.random.default_rng(1))
    for _ in range(50):
        da, db = a.decide(_obs(4)), b.decide(_obs(4))
        da.check(_obs(4), "random")
        assert np.array_equal(da.n_images, db.n_images) and np.allclose(da.power_w, db.power_w)
        assert np.all((1 <= da.n_images) & (da.n_images <= 8))
        assert da.power_w.sum() == pytest.approx(2.0)


def test_prompt_agents():
    obs = _prompt_obs()
    assert build_prompt_agent("raw", {}, CTX, np.random.default_rng(0)).choose(obs) == 0
    assert build_prompt_agent("empirical", {}, CTX, np.random.default_rng(0)).choose(obs) == 6
    assert build_prompt_agent("empirical", {"strategy": 3}, CTX, np.random.default_rng(0)).choose(obs) == 3
    rnd = build_prompt_agent("random", {}, CTX, np.random.default_rng(0))
    assert set(rnd.choose(obs) for _ in range(300)) == set(range(7))


@pytest.mark.parametrize(
    "kind, name, params, message",
    [
        ("prov", "nope", {}, "unknown provisioning agent 'nope'; known:"),
        ("prov", "static", {"n_images": 0}, "n_images must be in 1..8"),
        ("prov", "static", {"images": 2}, "does not take images; it takes n_images"),
        ("prompt", "empirical", {"strategy": 9}, "strategy must be in 0..6"),
        ("prompt", "raw", {"x": 1}, "does not take x; it takes no parameters"),
    ],
)
def test_bad_agents_give_clear_errors(kind, name, params, message):
    make = build_provisioning_agent if kind == "prov" else build_prompt_agent
    with pytest.raises(AgentError, match=message):
        make(name, params, CTX, np.random.default_rng(0))


def test_malformed_decision_rejected():
    obs = _obs(2)
    with pytest.raises(ValueError, match="expected \\(2,\\)"):
        Provision([1, 2, 3], [0.1, 0.1, 0.1]).check(obs, "x")
    with pytest.raises(ValueError, match="negative or non-finite"):
        Provision([1, 2], [0.1, np.nan]).check(obs, "x")
    with pytest.raises(ValueError, match="outside 0..8"):
        Provision([1, 9], [0.1, 0.1]).check(obs, "x")
