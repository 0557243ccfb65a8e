"""The multimodality study: landscapes with two near-optimal power splits, and the actors on them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from sim.decisions import ProvisioningObservation  # noqa: E402
from sim.model.quality import prompt_complexity  # noqa: E402
from sim.paper import multimodality as mm  # noqa: E402


@pytest.fixture(scope="module")
def env():
    return mm.TightBudgetBandit(mm.study_scenario())


def _twins(env, prompt="A dog with a colorful collar", distance=120.0, threshold=8.0) -> ProvisioningObservation:
    """Two identical users: the landscape must be symmetric in the power share."""
    d = np.array([distance, distance])
    return ProvisioningObservation(
        time_s=0.0, masp="masp0", p_total_w=env.p_total_w, max_images=env.n_max, user_ids=np.arange(2),
        prompts=(prompt, prompt), complexities=np.full(2, prompt_complexity(prompt)), distances_m=d,
        thresholds=np.full(2, threshold), mean_snr_db_at_1w=np.asarray(env.models.channel.mean_snr_db(1.0, d)),
        rounds_done=np.zeros(2, dtype=int), best_scores=np.zeros(2))


def test_modes_and_the_multimodal_test():
    two = np.array([-1.0, -1.5, -2.0, -1.5, -1.01])
    assert mm.modes(np.interp(mm.SHARES, np.linspace(0, 1, 5), two))[:2] == [0, len(mm.SHARES) - 1]
    assert mm.is_multimodal(np.interp(mm.SHARES, np.linspace(0, 1, 5), two))
    # one peak, or a second peak far below the first, or two peaks close together: not multimodal
    assert not mm.is_multimodal(-((mm.SHARES - 0.4) ** 2))
    assert not mm.is_multimodal(np.interp(mm.SHARES, np.linspace(0, 1, 5), [-1.0, -1.5, -2.0, -1.5, -1.3]))
    assert not mm.is_multimodal(np.interp(mm.SHARES, [0, 0.3, 0.35, 0.4, 1], [-2.0, -1.0, -1.05, -1.0, -2.0]))


def test_the_bandit_is_a_gymnasium_env_rewarding_the_exact_expected_utility(env):
    check_env(mm.TightBudgetBandit(mm.study_scenario()), skip_render_check=True)
    env.reset(seed=3)
    obs = env._obs
    action = np.array([0.5, -0.5, 1.0, -1.0], dtype=np.float32)
    expected = env.oracle.expected_utility(obs, env.provision(action)) / 2
    _, reward, terminated, _, _ = env.step(action)
    assert reward == pytest.approx(expected) and terminated


def test_a_tight_budget_has_two_symmetric_modes_and_a_valley_at_the_equal_split(env):
    values, _ = mm.landscape(env, _twins(env))
    # symmetric but for the queue: user 0's images leave the GPU first (latency differs by seconds)
    np.testing.assert_allclose(values, values[::-1], rtol=1e-3)
    middle = values[len(values) // 2]
    assert values.max() > middle and mm.is_multimodal(values)
    assert {mm.SHARES[k] for k in mm.modes(values)[:2]} == {0.0, 1.0} or abs(
        mm.SHARES[mm.modes(values)[0]] - mm.SHARES[mm.modes(values)[1]]) >= mm.MODE_SEPARATION
    # with a generous budget the split has one peak in the middle
    rich = mm.TightBudgetBandit(mm.study_scenario(p_total_w=1.0))
    rich_values, _ = mm.landscape(rich, _twins(rich))
    assert not mm.is_multimodal(rich_values) and 0.3 <= mm.SHARES[int(np.argmax(rich_values))] <= 0.7


def test_tiny_study_writes_its_tables_figure_and_section(tmp_path):
    budget = mm.MultimodalityBudget(steps=40, seeds=(0,), states=2, samples=8, quick=True)
    result = mm.reproduce(tmp_path, jobs=1, budget=budget, log=lambda _: None)
    actions = pd.read_csv(tmp_path / "actions.csv")
    assert set(actions["actor"]) == {"d3pg", "ddpg"} and len(actions) == 4
    states = pd.read_csv(tmp_path / "states.csv")
    for r in actions.itertuples(index=False):
        # nothing beats the optimum (the landscape's grid or the oracle's exact search)
        assert r.regret >= -1e-3 * abs(states.set_index("state").loc[r.state, "best"])
        assert 0.0 <= r.share <= 1.0
    d3pg = actions[actions["actor"] == "d3pg"]
    assert np.allclose(d3pg["sample_low"] + d3pg["sample_high"] + d3pg["sample_middle"], 1.0)
    assert all(len(json.loads(s)) == 8 for s in d3pg["sample_shares"])
    assert (tmp_path / "multimodality.png").exists() and result["summary"]["states"] == len(states) == 2
    assert "## Where a diffusion actor should matter" in mm.section(tmp_path)
    # finished actors are not trained again
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "models").glob("*.pt")}
    mm.reproduce(tmp_path, jobs=1, budget=budget, log=lambda _: None)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "models").glob("*.pt")} == before
