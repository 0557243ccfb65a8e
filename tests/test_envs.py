"""The provisioning gymnasium env: API conformance, seeding, action mappings, shared features."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sim.config import load_scenario, parse_scenario
from sim.model.qoe import QoEParams, utility
from sim.rl.provisioning_env import (
    ENV_ID,
    ProvisioningEnv,
    action_to_provision,
    observation_vector,
)
from sim.rl.registration import register_envs
from sim.world.simulation import World

SCENARIO = "scenarios/three_users.yaml"


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(SCENARIO)


@pytest.mark.parametrize("mapping", ["feasible", "penalised"])
def test_check_env_both_mappings(scenario, mapping):
    env = ProvisioningEnv(scenario, episode_length=4, action_mapping=mapping)
    check_env(env, skip_render_check=True)
    made = gym.make(ENV_ID, scenario=scenario, episode_length=4, action_mapping=mapping)
    check_env(made.unwrapped, skip_render_check=True)


def test_registration_is_idempotent():
    register_envs()
    register_envs()
    assert ENV_ID in gym.envs.registry


def test_reset_seed_reproducible(scenario):
    actions = np.random.default_rng(0).uniform(-1, 1, size=(10, 6)).astype(np.float32)

    def roll(seed):
        env = ProvisioningEnv(scenario, episode_length=5)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        rewards = []
        for a in actions:
            obs, r, term, trunc, _ = env.step(a)
            out.append(obs)
            rewards.append(r)
            assert not term
            if trunc:
                obs, _ = env.reset()
                out.append(obs)
        return np.concatenate(out), np.array(rewards)

    o1, r1 = roll(11)
    o2, r2 = roll(11)
    o3, r3 = roll(12)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(o1, o3)


def test_truncates_at_episode_length(scenario):
    env = ProvisioningEnv(scenario, episode_length=3)
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[3] for _ in range(3)]
    assert flags == [False, False, True]


def test_feasible_mapping_sums_to_budget_and_n_in_range():
    rng = np.random.default_rng(1)
    for _ in range(500):
        q = int(rng.integers(1, 6))
        a = rng.uniform(-1.5, 1.5, size=2 * q)
        p = action_to_provision(a, 8, 2.5, "feasible")
        assert np.isclose(p.power_w.sum(), 2.5)
        assert np.all(p.power_w > 0)
        assert np.all((1 <= p.n_images) & (p.n_images <= 8))
    p = action_to_provision([-1, 1, 0, 0], 8, 1.0)
    assert p.n_images.tolist() == [1, 8] and np.allclose(p.power_w, 0.5)


def test_penalised_mapping_applies_eq22_penalty(scenario):
    env = ProvisioningEnv(scenario, episode_length=4, action_mapping="penalised")
    env.reset(seed=5)
    a = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0], dtype=np.float32)  # P_i = P_total each: sum 3 P_total
    _, reward, _, _, info = env.step(a)
    u = info["users"]
    assert np.allclose(u["power_w"], scenario.masps[0].p_total_w)
    assert info["power_violation"]
    direct = utility(u["best_score"], u["threshold"], u["latency_s"], u["n_images"], u["power_w"],
                     scenario.masps[0].p_total_w, QoEParams(**scenario.qoe.model_dump()))
    assert np.isclose(reward, direct.total)
    params = QoEParams(**scenario.qoe.model_dump())
    assert np.isclose(direct.penalty, params.penalty * (direct.violations + 3))
    # within the budget no power penalty
    _, _, _, _, info2 = env.step(np.array([0, 0, 0, -1, -1, -0.5], dtype=np.float32))
    assert not info2["power_violation"]


def test_reward_is_shared_utility_of_info(scenario):
    env = ProvisioningEnv(scenario, episode_length=4)
    env.reset(seed=2)
    _, reward, _, _, info = env.step(env.action_space.sample())
    u = info["users"]
    direct = utility(u["best_score"], u["threshold"], u["latency_s"], u["n_images"], u["power_w"],
                     scenario.masps[0].p_total_w, QoEParams(**scenario.qoe.model_dump()))
    assert np.isclose(reward, direct.total)
    assert np.array_equal(u["satisfied"], u["best_score"] >= u["threshold"])
    # FIFO latency on one GPU: last image of user i at (sum_{j<=i} N_j) * T plus a short transmission
    t = scenario.generator.inference_time_s
    expected = np.cumsum(u["n_images"]) * t
    assert np.all(u["latency_s"] >= expected) and np.all(u["latency_s"] < expected + 1.0)


def test_observation_vector_matches_world_observation(scenario):
    """The world's ProvisioningObservation of the same users gives the env's features."""
    sc = scenario.model_copy(deep=True)
    world = World(sc, seed=0)
    obs_world = world._observe(world.masps[0], [world._associate(u) and u for u in world.users])
    vec_world = observation_vector(obs_world, sc)
    env = ProvisioningEnv(sc)
    env.reset(seed=0)
    e = env.current_observation
    same = type(e)(**{**e.__dict__, "prompts": obs_world.prompts, "complexities": obs_world.complexities,
                      "distances_m": obs_world.distances_m, "thresholds": obs_world.thresholds,
                      "mean_snr_db_at_1w": np.asarray(env.channel.mean_snr_db(1.0, obs_world.distances_m))})
    np.testing.assert_allclose(observation_vector(same, sc), vec_world)
    assert vec_world.shape == env.observation_space.shape and env.observation_space.contains(vec_world)
    # the env's own observation is observation_vector of its ProvisioningObservation
    obs, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs, observation_vector(env.current_observation, sc))
    # padding for smaller batches
    padded = observation_vector(obs_world, sc, n_users=5)
    assert padded.shape == (21,) and np.all(padded[12:20] == 0)


def test_bad_arguments_are_clear(scenario):
    with pytest.raises(ValueError, match="action_mapping"):
        ProvisioningEnv(scenario, action_mapping="nope")
    with pytest.raises(ValueError, match="strategy"):
        ProvisioningEnv(scenario, strategy=9)
    with pytest.raises(ValueError, match="mapping"):
        action_to_provision([0, 0], 8, 1.0, "x")


def test_default_scenario_and_render():
    env = ProvisioningEnv(parse_scenario({"name": "d"}), episode_length=2, render_mode="ansi")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert "user 0" in env.render()
