"""sim/World-v0: the SimPy world stepped from one provisioning decision to the next."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sim.backends import agent_context, build_provisioning_agent
from sim.config import load_scenario, parse_scenario
from sim.decisions import Provision
from sim.rl.registration import WORLD_ENV_ID
from sim.rl.world_env import WorldEnv, episode_return
from sim.world.simulation import World

SMALL = {"name": "world_env", "arrivals": {"n_users": 8}, "generator": {"image_size": 32}}
POISSON = {
    "name": "world_env_poisson",
    "arrivals": {"process": "poisson", "n_users": 20, "rate_per_s": 0.5},
    "masps": [{"name": "a", "max_users_per_epoch": 3, "position_m": [0.0, 0.0]},
              {"name": "b", "max_users_per_epoch": 2, "position_m": [150.0, 0.0]}],
    "service": {"association": "least_loaded"},
}


@pytest.mark.parametrize("mapping", ["feasible", "penalised"])
def test_check_env(mapping):
    env = gym.make(WORLD_ENV_ID, scenario=parse_scenario(SMALL), action_mapping=mapping, render_mode="ansi")
    check_env(env.unwrapped, skip_render_check=False)


def test_gym_make_builds_it():
    env = gym.make(WORLD_ENV_ID, scenario=parse_scenario(SMALL))
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs) and info["users"] >= 1


@pytest.mark.parametrize("data", [SMALL, POISSON], ids=["batch", "poisson-2-masps"])
@pytest.mark.parametrize("agent", [("static", {"n_images": 4}), ("random", {}), ("oracle", {})])
def test_return_is_the_worlds_objective_for_the_same_decisions(data, agent):
    """An agent stepping the env and the same agent inside the world make the same decisions: same run, same numbers."""
    name, params = agent
    scenario = parse_scenario({**data, "channel": {"delivery": "statistical"},
                               "provisioning_agent": {"name": name, "params": params}})
    seed = 5
    env = WorldEnv(scenario)
    env.reset(seed=seed)
    # the agent gets the same stream the world would give it
    agent_rng = World(scenario, seed=seed).streams.rng("provisioning_agent")
    decider = build_provisioning_agent(name, params, agent_context(scenario, env.world.models), agent_rng)
    total, summary = episode_return(env, seed, lambda e: decider.decide(e.current_observation))
    reference = World(scenario, seed=seed).run().summary
    assert summary == reference
    assert total == pytest.approx(reference["mean_utility"], abs=1e-12)


def test_decisions_change_what_comes_next():
    """Users come back: the second decision's users depend on the first decision (gamma > 0 matters)."""
    scenario = parse_scenario({**SMALL, "arrivals": {"n_users": 3}, "service": {"max_rounds": 4}})
    seconds = []
    for n in (1, 8):
        env = WorldEnv(scenario)
        env.reset(seed=2)
        env.step_provision(Provision([n] * 3, [1 / 3] * 3))
        obs = env.current_observation if env._request is not None else None
        seconds.append(None if obs is None else (obs.n_users, obs.time_s, tuple(obs.best_scores.round(6))))
    assert seconds[0] != seconds[1]


def test_observation_carries_the_worlds_state():
    scenario = load_scenario("scenarios/three_users.yaml")
    env = WorldEnv(scenario)
    vec, _ = env.reset(seed=0)
    obs = env.current_observation
    assert obs.n_users == 3 and np.all(obs.rounds_done == 0) and np.all(obs.waited_s == 0)
    assert vec[7] == 1.0 and vec[8 * 3 + 2] == pytest.approx(scenario.masps[0].p_total_w)
    env.step_provision(Provision([1, 1, 1], [0.001] * 3))  # one image at a milliwatt: nobody is served
    later = env.current_observation  # so all three are back for a second round, after waiting
    assert later.n_users == 3 and np.all(later.rounds_done == 1) and np.all(later.waited_s > 0)
    assert np.all(later.images_received == 1)


def test_bad_use_is_refused_clearly():
    scenario = parse_scenario(SMALL)
    with pytest.raises(ValueError, match="n_users .* must cover"):
        WorldEnv(scenario, n_users=2)
    with pytest.raises(ValueError, match="delivery must be"):
        WorldEnv(scenario, delivery="pixels")
    env = WorldEnv(scenario)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(6))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(4))
    with pytest.raises(RuntimeError, match="advance"):
        World(scenario, external_decisions=True).run()


def test_bytes_delivery_runs_the_real_path():
    scenario = parse_scenario({**SMALL, "arrivals": {"n_users": 3}})
    env = WorldEnv(scenario, delivery="bytes", record_images=True)
    total, summary = episode_return(env, 0, lambda e: Provision([2] * e.current_observation.n_users,
                                                              [1 / e.current_observation.n_users] * e.current_observation.n_users))
    images = env.world.image_records
    assert images and all(im.assessor == "fidelity" for im in images)
    assert total == pytest.approx(summary["mean_utility"])
    # the summary's image metrics come from the running tally, records kept or not
    assert summary["undecodable_rate"] == pytest.approx(np.mean([not im.decodable for im in images]))
    assert summary["mean_ber"] == pytest.approx(np.mean([im.ber for im in images]))
    assert episode_return(WorldEnv(scenario, delivery="bytes"), 0, lambda e: Provision(
        [2] * e.current_observation.n_users, [1 / e.current_observation.n_users] * e.current_observation.n_users))[1] == summary


def test_vectorised_for_stable_baselines3():
    pytest.importorskip("stable_baselines3")
    from sim.rl.world_env import make_world_vec_env

    vec = make_world_vec_env(parse_scenario(SMALL), n_envs=2, seed=3)
    obs = vec.reset()
    assert obs.shape == (2, *vec.observation_space.shape)
    for _ in range(12):  # episodes end and reset on their own inside the VecEnv
        obs, rewards, dones, infos = vec.step(np.zeros((2, *vec.action_space.shape), dtype=np.float32))
        assert obs.shape[0] == 2 and np.all(np.isfinite(rewards))
