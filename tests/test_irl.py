"""GAIL (sim/rl/algos/gail.py): discriminator, reward relabelling, BC warm start, imitation, save/load."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")

from sim.config import parse_scenario  # noqa: E402
from sim.rl.algos.gail import GAIL, GAILConfig  # noqa: E402
from sim.rl.prompt_env import PromptEnv  # noqa: E402
from sim.rl.prompt_evaluation import random_policy
from sim.rl.prompt_training import (
    ModelExpert,
    evaluate_prompt_policy,
    expert_pairs,
    model_policy,
    scenario_prompts,
    split_prompts,
)

SC = parse_scenario({"name": "irl_test", "generator": {"image_size": 64}})
BITS = 20_000.0
SPLIT = split_prompts(scenario_prompts(SC), 12, seed=0)
SMALL = {"n_steps": 256, "batch_size": 64, "n_epochs": 4, "disc_batch_size": 64}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Small networks: one torch thread (see tests/conftest.py)."""


class Always:
    """An expert that always picks one strategy."""

    def __init__(self, strategy: int):
        self.strategy = strategy

    def covers(self, prompt):
        return True

    def action(self, prompt, power_w):
        return self.strategy


def env(prompts=SPLIT.train) -> PromptEnv:
    return PromptEnv(SC, prompts=list(prompts), image_bits=BITS, normalize_reward=True)


def pairs(expert, prompts=SPLIT.train, episodes=3):
    return expert_pairs(expert, SC, list(prompts), episodes, seed=0, image_bits=BITS)


def test_discriminator_separates_expert_from_random_pairs():
    obs, actions = pairs(ModelExpert(env().quality))
    assert set(np.unique(actions)) == {0, 6}  # the complexity rule: 6 for simple prompts, 0 for complex ones
    gail = GAIL(env(), obs, actions, GAILConfig(seed=0, disc_obs_start=21, **SMALL))
    rng = np.random.default_rng(0)
    random_actions = rng.integers(7, size=len(actions))
    for _ in range(40):  # 40 rounds x 10 epochs of minibatches: a few hundred gradient steps
        stats = gail.train_discriminator(obs, random_actions)
    fresh_obs, fresh_actions = pairs(ModelExpert(env().quality), SPLIT.held_out[:20], episodes=1)
    other = (fresh_actions + rng.integers(1, 7, size=len(fresh_actions))) % 7  # never the expert's action
    p_expert = 1 / (1 + np.exp(-gail.logits(fresh_obs, fresh_actions)))
    p_other = 1 / (1 + np.exp(-gail.logits(fresh_obs, other)))
    accuracy = 0.5 * ((p_expert > 0.5).mean() + (p_other < 0.5).mean())
    assert accuracy > 0.85, (accuracy, stats)
    # and the generator's reward -log(1 - D) prefers the expert's pairs
    assert gail.reward(fresh_obs, fresh_actions).mean() > 3 * gail.reward(fresh_obs, other).mean()
    assert np.allclose(gail.reward(fresh_obs, fresh_actions), np.minimum(np.log1p(np.exp(gail.logits(fresh_obs, fresh_actions))), 10), atol=1e-5)


def test_gail_imitates_a_fixed_strategy_on_held_out_prompts():
    """Pure GAIL (no BC): the generator learns the expert's strategy from the discriminator's reward alone."""
    expert = Always(3)
    obs, actions = pairs(expert)
    gail = GAIL(env(), obs, actions, GAILConfig(seed=1, disc_obs_start=21, **SMALL))
    gail.learn(3072)
    held_out = list(SPLIT.held_out[:24])
    learned = evaluate_prompt_policy(model_policy(gail), SC, held_out, 1, seed=0, expert=expert, image_bits=BITS).summary
    rand = evaluate_prompt_policy(random_policy(0), SC, held_out, 1, seed=0, expert=expert, image_bits=BITS).summary
    assert learned["agreement"] > rand["agreement"] + 0.3, (learned["action_shares"], rand["agreement"])
    assert learned["agreement"] > 0.6
    # the rollout buffer's rewards were rewritten with the discriminator's reward
    buffer = gail.ppo.rollout_buffer
    last_obs = buffer.observations.reshape(-1, gail.obs_dim)
    assert gail.history and gail.history[-1]["timesteps"] == gail.num_timesteps
    assert np.isfinite(gail.last_stats["env_reward"]) and 0 <= gail.last_stats["env_reward"] <= 1
    rewards = buffer.rewards.reshape(-1)
    assert not np.allclose(rewards, buffer.rewards.mean())  # not the env's score reward
    assert rewards.min() >= 0 and len(last_obs) == SMALL["n_steps"]


def test_behaviour_cloning_warm_start_fits_the_expert():
    quality = env().quality
    obs, actions = pairs(ModelExpert(quality))
    gail = GAIL(env(), obs, actions, GAILConfig(seed=0, bc_epochs=30, **SMALL))
    loss = gail.behaviour_clone()
    predicted = np.array([int(gail.predict(o, deterministic=True)[0]) for o in obs])
    assert loss < 0.3 and (predicted == actions).mean() > 0.9
    assert gail.bc_done


def test_save_and_load_round_trip(tmp_path):
    obs, actions = pairs(Always(5), episodes=1)
    gail = GAIL(env(), obs, actions, GAILConfig(seed=2, grad_penalty=1.0, **SMALL))
    gail.learn(256)
    assert gail.last_stats["grad_penalty"] > 0 and np.isfinite(gail.last_stats["loss"])
    gail.save(tmp_path)
    assert (tmp_path / "model.zip").is_file() and (tmp_path / "discriminator.pt").is_file()
    again = GAIL.load(tmp_path, env())
    assert again.config == gail.config
    np.testing.assert_allclose(again.logits(obs, actions), gail.logits(obs, actions), atol=1e-6)
    assert [int(again.predict(o, deterministic=True)[0]) for o in obs[:20]] == [
        int(gail.predict(o, deterministic=True)[0]) for o in obs[:20]
    ]
    again.learn(256)  # training continues from the loaded state
    assert again.num_timesteps == 512
    with pytest.raises(FileNotFoundError, match="not a GAIL checkpoint"):
        GAIL.load(tmp_path / "nothing")


def test_bad_expert_data_is_refused():
    obs, actions = pairs(Always(1), episodes=1)
    with pytest.raises(ValueError, match="expert_obs"):
        GAIL(env(), obs[:-1], actions)
    with pytest.raises(ValueError, match="entries"):
        GAIL(env(), obs[:, :-1], actions)
    with pytest.raises(ValueError, match="expert actions"):
        GAIL(env(), obs, actions + 7)
    with pytest.raises(ValueError, match="n_steps"):
        GAILConfig(n_steps=0)
