"""D3PG (sim/rl/algos/d3pg.py): the diffusion actor, persistence, determinism, and two learning checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
gym = pytest.importorskip("gymnasium")

from sim.rl.algos.d3pg import (  # noqa: E402
    BETA_SCHEDULES,
    D3PG,
    DDPGMLP,
    D3PGConfig,
    DiffusionActor,
    MLPActor,
    TwinCritic,
    make_ddpg,
)

# Small networks on one thread: these models are bound by per-operation overhead, not FLOPs.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(actor_hidden=(64, 64), critic_hidden=(64, 64), batch_size=64)


# --- a 1-step contextual bandit with a known optimum --------------------------------------------

W = np.array([[0.5, -0.3], [0.2, 0.4]], dtype=np.float32)


class LinearTargetBandit(gym.Env):
    """State ``s ~ U[-1, 1]^2``; reward ``-||a - W s||^2``; every episode is one step.

    The optimum is 0; a uniformly random action scores about -0.75.
    """

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.uniform(-1.0, 1.0, 2).astype(np.float32)
        return self.state, {}

    def step(self, action):
        reward = -float(np.sum((np.asarray(action) - W @ self.state) ** 2))
        return self.state, reward, True, False, {}


def bandit_score(agent: D3PG, n: int = 500) -> float:
    states = np.random.default_rng(123).uniform(-1.0, 1.0, (n, 2)).astype(np.float32)
    actions, _ = agent.predict(states)
    return float(np.mean(-np.sum((actions - states @ W.T) ** 2, axis=1)))


# --- the diffusion actor --------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 3, 5])
@pytest.mark.parametrize("schedule", sorted(BETA_SCHEDULES))
def test_sampled_actions_have_the_right_shape_and_bounds(steps, schedule):
    actor = DiffusionActor(obs_dim=4, action_dim=3, steps=steps, schedule=schedule, hidden=(32, 32))
    state = torch.randn(50, 4) * 10
    action = actor.sample(state, torch.Generator().manual_seed(0))
    assert action.shape == (50, 3)
    assert torch.isfinite(action).all()
    assert action.min() >= -1.0 and action.max() <= 1.0


@pytest.mark.parametrize("schedule", sorted(BETA_SCHEDULES))
@pytest.mark.parametrize("steps", [1, 2, 5, 10, 50])
def test_alpha_bar_is_decreasing_in_the_unit_interval(schedule, steps):
    actor = DiffusionActor(obs_dim=2, action_dim=1, steps=steps, schedule=schedule, hidden=(8,))
    abar = actor.alpha_bars.double()
    assert abar.shape == (steps,)
    assert ((abar > 0) & (abar < 1)).all()
    assert (abar[1:] < abar[:-1]).all()
    # The chain starts from N(0, I), so the forward process should end close to pure noise.
    assert abar[-1] < 0.05


def test_conditioned_noise_predictor_matches_forward():
    actor = DiffusionActor(obs_dim=3, action_dim=2, steps=5, hidden=(16, 16))
    state, x = torch.randn(7, 3), torch.randn(7, 2)
    eps = actor.eps_model.conditioned(state, 5)
    for i in range(5):
        expected = actor.eps_model(x, torch.full((7,), i), state)
        torch.testing.assert_close(eps(x, i), expected)


def test_actor_output_is_differentiable_through_the_chain():
    actor = DiffusionActor(obs_dim=4, action_dim=2, steps=5, hidden=(32, 32))
    critic = TwinCritic(4, 2, (32,))
    state = torch.randn(64, 4)
    loss = -critic.q1(torch.cat([state, actor.sample(state, torch.Generator().manual_seed(1))], -1)).mean()
    loss.backward()
    grads = [p.grad for p in actor.eps_model.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    first_layer = actor.eps_model.net[0].weight.grad
    assert first_layer.abs().sum() > 0


@pytest.mark.parametrize("straight_through", [True, False])
def test_saturated_actions_keep_a_gradient_only_with_the_straight_through_clip(straight_through):
    actor = DiffusionActor(obs_dim=2, action_dim=1, steps=3, hidden=(16,), straight_through=straight_through)
    with torch.no_grad():
        actor.eps_model.net[-1].bias.fill_(-50.0)  # x_0 predictions far above +1: every action saturates
    action, excess = actor.sample_with_excess(torch.randn(32, 2), torch.Generator().manual_seed(0))
    assert torch.all(action == 1.0) and excess > 1.0
    action.sum().backward()
    grad = actor.eps_model.net[-1].bias.grad
    assert (grad.abs().sum() > 0) == straight_through
    with torch.no_grad():  # no penalty bookkeeping outside autograd
        assert actor.sample_with_excess(torch.randn(4, 2))[1] == 0


def test_mlp_actor_is_bounded():
    actor = MLPActor(3, 2, (16,))
    out = actor.sample(torch.randn(20, 3) * 100)
    assert out.shape == (20, 2) and out.abs().max() <= 1.0


def test_config_validation_and_json_round_trip():
    cfg = D3PGConfig(denoising_steps=3, beta_schedule="cosine", actor_hidden=[32, 16], max_grad_norm=None)
    assert D3PGConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError):
        D3PGConfig(beta_schedule="quadratic")
    with pytest.raises(ValueError):
        D3PGConfig(denoising_steps=0)


# --- the agent -------------------------------------------------------------------------------------


def test_actions_are_scaled_to_any_box_bounds():
    env = gym.make("Pendulum-v1")  # actions in [-2, 2]
    agent = D3PG(env, D3PGConfig(**SMALL))
    assert np.allclose(agent.scale_action(np.array([-1.0])), -2.0)
    assert np.allclose(agent.scale_action(np.array([1.0])), 2.0)
    assert np.allclose(agent.unscale_action(agent.scale_action(np.array([0.3]))), 0.3, atol=1e-6)
    obs, _ = env.reset(seed=0)
    action, state = agent.predict(obs)
    assert state is None and action.shape == (1,) and env.action_space.contains(action)
    batch, _ = agent.predict(np.stack([obs] * 5))
    assert batch.shape == (5, 1)

    class Asymmetric(LinearTargetBandit):
        action_space = gym.spaces.Box(np.array([0.0, 10.0], np.float32), np.array([1.0, 20.0], np.float32))

    agent = D3PG(Asymmetric(), D3PGConfig(**SMALL))
    states = np.random.default_rng(0).uniform(-1, 1, (100, 2)).astype(np.float32)
    actions, _ = agent.predict(states, deterministic=False)
    assert np.all(actions >= [0.0, 10.0]) and np.all(actions <= [1.0, 20.0])


def test_matrix_shaped_actions_keep_their_shape():
    class PerUser(LinearTargetBandit):  # e.g. (N_i, P_i) for 3 users
        action_space = gym.spaces.Box(np.zeros((3, 2), np.float32), np.full((3, 2), 4.0, np.float32))

        def step(self, action):
            assert action.shape == (3, 2)
            return self.state, -float(np.sum((action - 1.0) ** 2)), True, False, {}

    agent = D3PG(PerUser(), D3PGConfig(learning_starts=20, **SMALL)).learn(30)
    action, _ = agent.predict(np.zeros(2, np.float32))
    assert action.shape == (3, 2) and agent.action_space.contains(action)
    assert agent.predict(np.zeros((4, 2), np.float32))[0].shape == (4, 3, 2)
    assert np.allclose(agent.scale_action(agent.unscale_action(action)), action, atol=1e-5)


def test_rejects_unbounded_or_discrete_action_spaces():
    class Unbounded(LinearTargetBandit):
        action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    with pytest.raises(ValueError):
        D3PG(Unbounded())
    with pytest.raises(TypeError):
        D3PG(gym.make("CartPole-v1"))


def test_same_seed_same_agent_and_deterministic_predict():
    env = LinearTargetBandit()
    cfg = D3PGConfig(seed=7, learning_starts=50, **SMALL)
    a = D3PG(env, cfg).learn(120)
    b = D3PG(LinearTargetBandit(), cfg).learn(120)
    obs = np.array([0.2, -0.5], np.float32)
    assert np.array_equal(a.predict(obs)[0], b.predict(obs)[0])
    assert np.array_equal(a.predict(obs)[0], a.predict(obs)[0])  # deterministic=True is repeatable
    for pa, pb in zip(a.actor.parameters(), b.actor.parameters()):
        assert torch.equal(pa, pb)
    c = D3PG(LinearTargetBandit(), D3PGConfig(seed=8, learning_starts=50, **SMALL)).learn(120)
    assert not np.array_equal(a.predict(obs)[0], c.predict(obs)[0])


def test_building_an_agent_leaves_the_global_torch_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    D3PG(LinearTargetBandit(), D3PGConfig(**SMALL))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("actor", ["diffusion", "mlp"])
def test_save_load_round_trip(tmp_path, actor):
    env = gym.make("Pendulum-v1")
    agent = D3PG(env, D3PGConfig(seed=3, learning_starts=64, denoising_steps=3, **SMALL), actor=actor).learn(100)
    path = tmp_path / "agent.pt"
    agent.save(str(path))
    observations = np.stack([env.observation_space.sample() for _ in range(10)])
    for loaded in (D3PG.load(str(path)), D3PG.load(str(path), env=env)):
        assert loaded.actor_kind == actor and loaded.config == agent.config
        assert np.array_equal(loaded.predict(observations)[0], agent.predict(observations)[0])
        assert np.array_equal(loaded.predict(observations[0])[0], agent.predict(observations[0])[0])
    # A loaded agent with an env keeps training.
    D3PG.load(str(path), env=env).learn(10)
    with pytest.raises(RuntimeError):
        D3PG.load(str(path)).learn(10)


def test_the_ablation_shares_everything_but_the_actor():
    env = gym.make("Pendulum-v1")
    cfg = D3PGConfig(seed=0, **SMALL)
    d3pg, ddpg, made = D3PG(env, cfg), DDPGMLP(env, cfg), make_ddpg(env, cfg)
    assert isinstance(d3pg.actor, DiffusionActor)
    assert isinstance(ddpg.actor, MLPActor) and isinstance(made.actor, MLPActor)
    for p, q in zip(d3pg.critic.parameters(), ddpg.critic.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("actor", ["diffusion", "mlp"])
def test_learn_on_pendulum_is_finite(actor):
    env = gym.make("Pendulum-v1")  # 200-step episodes
    cfg = D3PGConfig(seed=0, learning_starts=1000, **SMALL)
    infos = []
    agent = D3PG(env, cfg, actor=actor).learn(1500, callback=lambda agent, info: infos.append(info))
    assert agent.num_timesteps == 1500 and len(infos) == 1500
    assert len(agent.logs["episode_returns"]) == 7
    assert all(math.isfinite(r) for r in agent.logs["episode_returns"])
    assert len(agent.logs["critic_losses"]) == len(agent.logs["actor_losses"]) == 500
    assert all(math.isfinite(x) for x in agent.logs["critic_losses"] + agent.logs["actor_losses"])
    assert infos[199]["episode_return"] is not None and infos[198]["episode_return"] is None


def test_callback_can_stop_training():
    agent = D3PG(LinearTargetBandit(), D3PGConfig(learning_starts=10, **SMALL))
    agent.learn(1000, callback=lambda agent, info: info["step"] < 25)
    assert agent.num_timesteps == 25


def test_options_run():
    cfg = D3PGConfig(learning_starts=64, policy_delay=2, target_policy_noise=0.2, normalize_q_loss=True,
                     bc_weight=0.5, beta_schedule="cosine", denoising_steps=2, max_grad_norm=None,
                     straight_through_clip=False, clip_penalty=0.0, **SMALL)
    agent = D3PG(LinearTargetBandit(), cfg).learn(100)
    assert len(agent.logs["actor_losses"]) == len(agent.logs["critic_losses"]) // 2
    assert all(math.isfinite(x) for x in agent.logs["actor_losses"])


@pytest.mark.parametrize("actor", ["diffusion", "mlp"])
def test_learns_a_contextual_bandit(actor):
    """Random actions score about -0.75; both actors should come close to the optimum 0 quickly."""
    env = LinearTargetBandit()
    cfg = D3PGConfig(seed=0, learning_starts=100, actor_lr=1e-3, critic_lr=1e-3, denoising_steps=5, **SMALL)
    agent = D3PG(env, cfg, actor=actor)
    random_score = float(np.mean([-np.sum((np.random.default_rng(i).uniform(-1, 1, 2) - W @ s) ** 2)
                                  for i, s in enumerate(np.random.default_rng(9).uniform(-1, 1, (500, 2)))]))
    assert random_score < -0.5
    agent.learn(600)
    assert bandit_score(agent) > -0.05


def test_act_time_is_positive():
    agent = D3PG(LinearTargetBandit(), D3PGConfig(**SMALL))
    seconds = agent.act_time_s(np.zeros(2, np.float32), repeats=5)
    assert 0 < seconds < 1


def test_train_freq_spaces_out_the_updates():
    cfg = D3PGConfig(learning_starts=70, train_freq=4, gradient_steps=2, **SMALL)
    agent = D3PG(LinearTargetBandit(), cfg).learn(110)
    # env steps 71..110 that are multiples of 4: 72, 76, ..., 108 -> 10 times, 2 gradient steps each
    assert agent.num_updates == 20 and len(agent.logs["critic_losses"]) == 20
    with pytest.raises(ValueError, match="train_freq"):
        D3PGConfig(train_freq=0)


def test_zero_discount_targets_the_reward_alone():
    """With gamma = 0 the critic's target is r (no target actor pass); the bandit is still learned."""
    import torch

    agent = D3PG(LinearTargetBandit(), D3PGConfig(seed=0, gamma=0.0, learning_starts=100, actor_lr=1e-3,
                                                  critic_lr=1e-3, **SMALL))
    calls = []
    agent._td_target = lambda *args: calls.append(args) or torch.zeros(1)
    agent.learn(600)
    assert calls == []
    assert bandit_score(agent) > -0.05


@pytest.mark.parametrize("actor", ["diffusion", "mlp"])
def test_batched_deterministic_predict_gives_each_observation_its_own_action(actor):
    agent = D3PG(LinearTargetBandit(), D3PGConfig(seed=4, **SMALL), actor=actor)
    states = np.random.default_rng(0).uniform(-1.0, 1.0, (7, 2)).astype(np.float32)
    batched, _ = agent.predict(states)
    singles = np.stack([agent.predict(s)[0] for s in states])
    assert np.allclose(batched, singles, atol=1e-6)


def test_terminal_transitions_skip_the_bootstrap_even_with_a_discount(monkeypatch):
    """Every step terminal (a bandit): the TD target is the reward, and the target actor's chain is not run."""
    agent = D3PG(LinearTargetBandit(), D3PGConfig(seed=0, gamma=0.99, **SMALL))

    def no_chain(*args, **kwargs):
        raise AssertionError("the target actor ran for terminal transitions")

    monkeypatch.setattr(agent.actor_target, "sample", no_chain)
    batch = (torch.zeros(8, 2), torch.zeros(8, 2), torch.ones(8), torch.zeros(8, 2), torch.ones(8))
    agent.train_step(batch)
    with pytest.raises(AssertionError, match="target actor ran"):
        agent.train_step((*batch[:4], torch.zeros(8)))  # not terminal: it bootstraps


def test_torch_threads_and_defaults_for_short_budgets():
    before = torch.get_num_threads()
    try:
        D3PG(LinearTargetBandit(), D3PGConfig(torch_threads=1, **SMALL))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert D3PGConfig().learning_starts == 100
    with pytest.raises(ValueError, match="torch_threads"):
        D3PGConfig(torch_threads=0)
