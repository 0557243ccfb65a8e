"""D3PG: a DDPG whose actor is a denoising diffusion model.

The D3PG paper ("Intelligent Mobile AIGC Service via Interactive Prompt Engineering and Dynamic
Service Provisioning", eqs. 25-30) replaces DDPG's deterministic actor by a small conditional
denoising diffusion model, in the style of GDMOPT and Diffusion-QL:

* the actor starts from Gaussian noise ``x_T ~ N(0, I)`` and runs ``T`` reverse DDPM steps
  ``x_{t-1} = mu_theta(x_t, t, s) + sigma_t z``, where a noise predictor ``eps_theta(x_t, t, s)``
  conditioned on the state ``s`` gives the posterior mean; ``x_0`` is the action in ``[-1, 1]^d``;
* the whole chain is differentiable, so the actor is trained as in DDPG by ascending ``Q(s, x_0(s))``
  through the chain, optionally plus a behaviour-cloning denoising term on replayed actions
  (Diffusion-QL);
* the critics are TD3-style twin Q-networks with target networks; the target is
  ``r + gamma (1 - terminated) min_j Q'_j(s', a')`` with ``a'`` sampled from the target actor;
  target networks follow by soft (Polyak) updates.

The file reads top to bottom like a CleanRL script: config, networks, replay buffer, the agent.
``actor="mlp"`` swaps the diffusion actor for a tanh MLP (the ablation, :class:`DDPGMLP`); the
critics, buffer and update rule stay identical.

Usage on any gymnasium environment with a bounded ``Box`` action space (observations: a
``Box``, or a ``Dict``/``Tuple`` of them, flattened):

>>> import gymnasium
>>> env = gymnasium.make("Pendulum-v1")
>>> agent = D3PG(env, D3PGConfig(seed=1, learning_starts=32, batch_size=32, actor_hidden=(32,),
...                               critic_hidden=(32,), torch_threads=1))
>>> agent = agent.learn(64)                      # env steps
>>> obs, _ = env.reset(seed=0)
>>> action, _ = agent.predict(obs)               # deterministic: the same action for the same obs
>>> bool(env.action_space.contains(action))
True

For a bandit (every step terminal), set ``gamma=0`` or let terminal transitions skip the
bootstrap on their own; ``learning_starts`` random steps come first (100 by default);
``torch_threads=1`` is fastest for small networks on a CPU. Save with ``agent.save(path)``
and load with ``D3PG.load(path)`` (tensors only, ``weights_only=True``).

Everything random (network init, the diffusion noise, exploration, replay sampling, the env's
reset) derives from ``config.seed``; nothing here touches the global random state at import,
and network init runs inside :func:`torch.random.fork_rng`, so building an agent leaves the
global torch generator untouched.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------
# 1. Configuration
# ---------------------------------------------------------------------------------------------


@dataclass
class D3PGConfig:
    """Hyper-parameters of D3PG (and of its MLP-actor ablation).

    Actions live in ``[-1, 1]^d`` inside the agent and are scaled affinely to the env's Box bounds;
    the noise scales below are in those normalised units.
    """

    #: Adam learning rate of the actor (noise predictor or MLP).
    actor_lr: float = 3e-4
    #: Adam learning rate of the twin critics.
    critic_lr: float = 3e-4
    #: Discount factor.
    gamma: float = 0.99
    #: Polyak coefficient of the soft target updates: ``target <- tau * online + (1 - tau) * target``.
    tau: float = 0.005
    #: Minibatch size of each gradient step.
    batch_size: int = 256
    #: Replay buffer capacity (transitions); the oldest are overwritten.
    buffer_size: int = 1_000_000
    #: Env steps taken with uniformly random actions before learning (and acting) starts (SB3's TD3 default).
    learning_starts: int = 100
    #: Learn every ``train_freq`` env steps (stable-baselines3's ``train_freq`` in steps).
    train_freq: int = 1
    #: Gradient steps each time learning happens (so ``gradient_steps / train_freq`` per env step).
    gradient_steps: int = 1
    #: Std of the Gaussian exploration noise added to the actor's action while collecting data.
    exploration_noise: float = 0.1
    #: Number of denoising steps ``T`` of the diffusion actor (the paper's small-T regime).
    denoising_steps: int = 5
    #: Variance-preserving noise schedule (``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``):
    #: ``"vp"`` the discretised VP-SDE of Song et al. used by Diffusion-QL / GDMOPT
    #: (``beta_t = 1 - exp(-b_min/T - (b_max - b_min)(2t - 1) / (2T^2))``, b_min=0.1, b_max=10),
    #: well suited to small T; ``"linear"`` DDPM's linear betas 1e-4..0.02 on its 1000-step grid,
    #: respaced to T steps (so the chain reaches noise for any T); ``"cosine"`` the
    #: Nichol & Dhariwal cosine ``abar`` (s=0.008, betas clipped at 0.999).
    beta_schedule: str = "vp"
    #: Hidden layer widths of the noise predictor / MLP actor.
    actor_hidden: tuple[int, ...] = (256, 256)
    #: Hidden layer widths of each Q-network.
    critic_hidden: tuple[int, ...] = (256, 256)
    #: Width of the sinusoidal time embedding of the noise predictor.
    time_embedding_dim: int = 16
    #: Actor (and target) update once every ``policy_delay`` critic updates (1 = DDPG, 2 = TD3).
    policy_delay: int = 1
    #: TD3 target policy smoothing: std of the clipped noise added to target actions (0 = off).
    target_policy_noise: float = 0.0
    #: Clip of the target policy smoothing noise.
    target_noise_clip: float = 0.5
    #: Max global gradient norm of each update (actor and critics); ``None`` disables clipping.
    max_grad_norm: float | None = 10.0
    #: Diffusion-QL's actor loss normalisation: divide the Q term by ``mean|Q|`` (detached),
    #: which makes the actor's step size independent of the reward scale.
    normalize_q_loss: bool = False
    #: Weight of Diffusion-QL's behaviour-cloning term (the denoising loss on replayed actions);
    #: 0 = pure DDPG actor loss as in the paper. Only meaningful for the diffusion actor.
    bc_weight: float = 0.0
    #: Clip the diffusion actor's action (its final ``x_0``) with a straight-through gradient. A hard clip
    #: has zero gradient at a saturated action, and a diffusion actor trained on Q alone then sticks
    #: at the bounds (on Pendulum-v1: every action saturated, no learning in 10k steps); passing the
    #: gradient through lets Q pull saturated actions back inside. ``False`` = the hard clip of
    #: Diffusion-QL / GDMOPT. Forward values are the same either way.
    straight_through_clip: bool = True
    #: Weight of ``mean(relu(|a_raw| - 1)^2)`` in the diffusion actor's loss, ``a_raw`` the unclipped
    #: action (the last step's ``x_0`` prediction): keeps it near the box, so that straight-through
    #: gradients stay meaningful (without it, on Pendulum-v1 the raw actions drift out and stick).
    clip_penalty: float = 1.0
    #: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    device: str = "auto"
    #: Seed of everything random in the agent (and of the env's first reset in :meth:`D3PG.learn`).
    seed: int = 0
    #: Torch threads (``torch.set_num_threads``, process-wide) when the agent is built; ``None`` leaves them.
    #: Small networks on a CPU run fastest on one thread.
    torch_threads: int | None = None

    def __post_init__(self) -> None:
        self.actor_hidden = tuple(int(h) for h in self.actor_hidden)
        self.critic_hidden = tuple(int(h) for h in self.critic_hidden)
        if self.denoising_steps < 1:
            raise ValueError(f"denoising_steps must be >= 1, got {self.denoising_steps}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {sorted(BETA_SCHEDULES)}, got {self.beta_schedule!r}")
        if min(self.policy_delay, self.gradient_steps, self.batch_size, self.train_freq) < 1:
            raise ValueError("policy_delay, gradient_steps, train_freq and batch_size must be >= 1")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.torch_threads is not None and int(self.torch_threads) < 1:
            raise ValueError(f"torch_threads must be >= 1 or None, got {self.torch_threads}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "D3PGConfig":
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# ---------------------------------------------------------------------------------------------
# 2. Networks
# ---------------------------------------------------------------------------------------------


def vp_beta_schedule(steps: int, b_min: float = 0.1, b_max: float = 10.0) -> torch.Tensor:
    """Discretised variance-preserving SDE (Song et al. 2021), as in Diffusion-QL / GDMOPT."""
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    alpha = torch.exp(-b_min / steps - 0.5 * (b_max - b_min) * (2 * t - 1) / steps**2)
    return 1.0 - alpha


def linear_beta_schedule(steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear betas on its 1000-step grid, respaced to ``steps`` steps (Nichol & Dhariwal):
    keep ``abar`` at ``steps`` evenly spaced grid points, so any T ends near pure noise."""
    grid_abar = torch.cumprod(1 - torch.linspace(beta_start, beta_end, 1000, dtype=torch.float64), 0)
    abar = grid_abar[torch.arange(1, steps + 1) * 1000 // steps - 1]
    return (1 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])).clamp(max=0.999)


def cosine_beta_schedule(steps: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: ``abar(t) = cos^2(((t/T) + s) / (1 + s) * pi / 2)``."""
    x = torch.linspace(0, steps, steps + 1, dtype=torch.float64)
    abar = torch.cos(((x / steps) + s) / (1 + s) * math.pi * 0.5) ** 2
    abar = abar / abar[0]
    return (1 - abar[1:] / abar[:-1]).clamp(min=1e-6, max=0.999)


BETA_SCHEDULES: dict[str, Callable[[int], torch.Tensor]] = {
    "vp": vp_beta_schedule,
    "linear": linear_beta_schedule,
    "cosine": cosine_beta_schedule,
}


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), activation()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of the (integer) diffusion step ``t``."""

    def __init__(self, dim: int):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"time embedding dim must be even and >= 2, got {dim}")
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        exponents = torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1)
        freqs = torch.exp(-math.log(10_000.0) * exponents)
        args = t.float().unsqueeze(-1) * freqs
        return torch.cat([args.sin(), args.cos()], dim=-1)


class NoisePredictor(nn.Module):
    """``eps_theta(x_t, t, s)``: an MLP on ``[x_t, time-embedding(t), s]`` (Mish activations, as in Diffusion-QL)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...] = (256, 256), time_dim: int = 16):
        super().__init__()
        self.split = (action_dim, time_dim, obs_dim)
        self.time_mlp = nn.Sequential(
            SinusoidalTimeEmbedding(time_dim),
            nn.Linear(time_dim, 2 * time_dim),
            nn.Mish(),
            nn.Linear(2 * time_dim, time_dim),
        )
        self.net = mlp(action_dim + time_dim + obs_dim, hidden, action_dim, nn.Mish)

    def forward(self, x: torch.Tensor, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, self.time_mlp(t), state], dim=-1))

    def conditioned(self, state: torch.Tensor, steps: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """``eps(x, i) = forward(x, i, state)`` for a fixed state, faster along a chain.

        The first layer is linear in ``[x, emb(t), s]``, so the state's and the time's shares of
        it are computed once per chain (for every ``t < steps``) instead of once per step; on small
        networks the reverse chain is bound by per-operation overhead, and this halves its cost.
        """
        first, rest = self.net[0], self.net[1:]
        w_x, w_t, w_s = first.weight.split(self.split, dim=1)
        h_time = F.linear(self.time_mlp(torch.arange(steps, device=state.device)), w_t)  # (T, H)
        h_cond = F.linear(state, w_s, first.bias).unsqueeze(0) + h_time.unsqueeze(1)  # (T, B, H)
        return lambda x, i: rest(F.linear(x, w_x) + h_cond[i])


class DiffusionActor(nn.Module):
    """Conditional DDPM policy: ``T`` reverse steps from ``N(0, I)`` to an action in ``[-1, 1]^d``.

    Step ``t = T..1``: predict the noise, reconstruct ``x_0`` and clip it to ``[-1, 1]`` (DDPM's
    ``clip_denoised``; clipping the noisy ``x_t`` itself would distort the chain), take the posterior
    mean ``mu = c0 x_0 + ct x_t`` and add ``sigma_t z``; at the last step (``c0 = 1, ct = 0``) the
    clipped ``x_0`` is the action. Autograd runs through every step; with ``straight_through`` the
    final clip passes gradients unchanged (see :attr:`D3PGConfig.straight_through_clip`).
    """

    def __init__(self, obs_dim: int, action_dim: int, steps: int = 5, schedule: str = "vp",
                 hidden: tuple[int, ...] = (256, 256), time_dim: int = 16, straight_through: bool = True):
        super().__init__()
        self.action_dim, self.steps, self.straight_through = action_dim, steps, straight_through
        self.eps_model = NoisePredictor(obs_dim, action_dim, hidden, time_dim)
        betas = BETA_SCHEDULES[schedule](steps)
        alphas = 1.0 - betas
        alpha_bars = torch.cumprod(alphas, 0)
        alpha_bars_prev = torch.cat([torch.ones(1, dtype=alpha_bars.dtype), alpha_bars[:-1]])
        posterior_var = betas * (1 - alpha_bars_prev) / (1 - alpha_bars)
        buffers = {
            "betas": betas,
            "alphas": alphas,
            "alpha_bars": alpha_bars,
            "sqrt_recip_alpha_bars": (1 / alpha_bars).sqrt(),
            "sqrt_recipm1_alpha_bars": (1 / alpha_bars - 1).sqrt(),
            "sqrt_alpha_bars": alpha_bars.sqrt(),
            "sqrt_one_minus_alpha_bars": (1 - alpha_bars).sqrt(),
            # posterior q(x_{t-1} | x_t, x_0) = N(c0 x_0 + ct x_t, posterior_var)
            "posterior_c0": betas * alpha_bars_prev.sqrt() / (1 - alpha_bars),
            "posterior_ct": (1 - alpha_bars_prev) * alphas.sqrt() / (1 - alpha_bars),
            "posterior_std": posterior_var.clamp(min=1e-20).sqrt(),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.float(), persistent=False)
        # The same coefficients as Python floats, for the sampling loop (indexing a tensor costs an op).
        self._chain = [tuple(float(buffers[k][i]) for k in ("sqrt_recip_alpha_bars", "sqrt_recipm1_alpha_bars",
                                                            "posterior_c0", "posterior_ct", "posterior_std"))
                       for i in range(steps)]

    def sample(self, state: torch.Tensor, generator: torch.Generator | None = None,
               shared_noise: bool = False) -> torch.Tensor:
        """Run the reverse chain for a batch of states ``(B, obs_dim)``; returns ``(B, action_dim)``."""
        return self.sample_with_excess(state, generator, shared_noise)[0]

    def sample_with_excess(self, state: torch.Tensor, generator: torch.Generator | None = None,
                           shared_noise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`sample`, plus ``mean(relu(|a_raw| - 1)^2)``, how far the unclipped action (the last
        step's ``x_0`` prediction) left the box (computed only when autograd is recording; else 0).

        ``shared_noise``: every state of the batch gets the same chain noise (what a batch of one
        would draw), so that a batch gives each state the action it gets alone.
        """
        batch = state.shape[0]
        track = torch.is_grad_enabled()
        rows = 1 if shared_noise else batch
        noise = torch.randn(self.steps, rows, self.action_dim, device=state.device, generator=generator)
        noise = noise.expand(self.steps, batch, self.action_dim)
        eps_model = self.eps_model.conditioned(state, self.steps)
        excess = torch.zeros((), device=state.device)
        x = noise[-1]  # x_T ~ N(0, I); noise[i - 1] is the fresh noise of step i
        for i in reversed(range(self.steps)):  # index i is diffusion step t = i + 1
            recip, recipm1, c0, ct, std = self._chain[i]
            eps = eps_model(x, i)
            x0 = torch.add(recip * x, eps, alpha=-recipm1)  # predicted x_0
            if i == 0:  # the last step's posterior mean is x_0 itself (c0 = 1, ct = 0): the action
                break
            x = torch.add(c0 * x0.clamp(-1.0, 1.0), x, alpha=ct)  # posterior mean
            x = x.add(noise[i - 1], alpha=std)
        if not track:
            return x0.clamp(-1.0, 1.0), excess
        excess = F.relu(x0.abs() - 1.0).square().mean()
        if self.straight_through:
            return x0 + (x0.clamp(-1.0, 1.0) - x0).detach(), excess  # clipped values, identity gradient
        return x0.clamp(-1.0, 1.0), excess

    forward = sample

    def bc_loss(self, state: torch.Tensor, action: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Diffusion-QL's behaviour-cloning term: the denoising loss ``||eps - eps_theta(x_t, t, s)||^2``."""
        batch = state.shape[0]
        t = torch.randint(0, self.steps, (batch,), device=state.device, generator=generator)
        noise = torch.randn(action.shape, device=action.device, generator=generator)
        x_t = self.sqrt_alpha_bars[t, None] * action + self.sqrt_one_minus_alpha_bars[t, None] * noise
        return F.mse_loss(self.eps_model(x_t, t, state), noise)


class MLPActor(nn.Module):
    """DDPG's deterministic actor (the ablation): ``tanh(MLP(s))``; ``generator`` is ignored."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        self.net = mlp(obs_dim, hidden, action_dim)

    def sample(self, state: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.tanh(self.net(state))

    def sample_with_excess(self, state: torch.Tensor,
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sample(state), torch.zeros((), device=state.device)  # tanh never leaves the box

    forward = sample


class TwinCritic(nn.Module):
    """Two independent Q-networks ``Q_j(s, a)``; targets use their minimum (clipped double Q)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        self.q1 = mlp(obs_dim + action_dim, hidden, 1)
        self.q2 = mlp(obs_dim + action_dim, hidden, 1)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sa = torch.cat([state, action], dim=-1)
        return self.q1(sa).squeeze(-1), self.q2(sa).squeeze(-1)

    def min_q(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        q1, q2 = self(state, action)
        return torch.minimum(q1, q2)


# ---------------------------------------------------------------------------------------------
# 3. Replay buffer
# ---------------------------------------------------------------------------------------------


class ReplayBuffer:
    """Preallocated numpy ring buffer of ``(s, a, r, s', terminated)``; actions stored in ``[-1, 1]``."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int):
        self.capacity, self.size, self.pos = int(capacity), 0, 0
        self.obs = np.zeros((self.capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((self.capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros((self.capacity, action_dim), dtype=np.float32)
        self.rewards = np.zeros(self.capacity, dtype=np.float32)
        self.terminated = np.zeros(self.capacity, dtype=np.float32)

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminated: bool) -> None:
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_obs[i], self.terminated[i] = next_obs, float(terminated)
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device) -> tuple[torch.Tensor, ...]:
        idx = rng.integers(0, self.size, size=batch_size)
        return tuple(
            torch.as_tensor(a[idx], device=device)
            for a in (self.obs, self.actions, self.rewards, self.next_obs, self.terminated)
        )

    def __len__(self) -> int:
        return self.size


# ---------------------------------------------------------------------------------------------
# 4. The agent
# ---------------------------------------------------------------------------------------------


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t, o in zip(target.parameters(), online.parameters()):
            t.lerp_(o, tau)


#: Signature of :meth:`D3PG.learn`'s callback: ``callback(agent, info) -> False to stop | None``.
Callback = Callable[["D3PG", dict[str, Any]], "bool | None"]


class D3PG:
    """Diffusion-actor DDPG (``actor="diffusion"``) or plain DDPG with twin critics (``actor="mlp"``).

    ``env`` is any gymnasium env with a bounded ``Box`` action space (observations are flattened
    with :func:`gymnasium.spaces.flatten`). ``env`` may be ``None`` when ``observation_space`` and
    ``action_space`` are given (prediction only, e.g. after :meth:`load`).
    """

    ACTORS = ("diffusion", "mlp")

    def __init__(self, env: gym.Env | None, config: D3PGConfig | None = None, actor: str = "diffusion", *,
                 observation_space: gym.Space | None = None, action_space: gym.spaces.Box | None = None):
        self.config = cfg = config if config is not None else D3PGConfig()
        if actor not in self.ACTORS:
            raise ValueError(f"actor must be one of {self.ACTORS}, got {actor!r}")
        self.actor_kind = actor
        self.env = env
        self.observation_space = observation_space if observation_space is not None else env.observation_space
        self.action_space = action_space if action_space is not None else env.action_space
        if not isinstance(self.action_space, gym.spaces.Box):
            raise TypeError(f"D3PG needs a Box action space, got {self.action_space}")
        low = np.asarray(self.action_space.low, dtype=np.float64).ravel()
        high = np.asarray(self.action_space.high, dtype=np.float64).ravel()
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError("D3PG needs a bounded Box action space (finite low and high)")
        self._action_low, self._action_high = low, high
        self.obs_dim = gym.spaces.flatdim(self.observation_space)
        self.action_dim = low.size
        self.device = _resolve_device(cfg.device)
        if cfg.torch_threads is not None:
            torch.set_num_threads(int(cfg.torch_threads))

        # Seeding: networks are initialised from cfg.seed without touching the global torch RNG;
        # diffusion / exploration noise comes from our own torch generator, replay sampling and
        # warm-up actions from our own numpy generator.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            # critics first, so that both actor variants get identical critics for one seed
            self.critic = TwinCritic(self.obs_dim, self.action_dim, cfg.critic_hidden).to(self.device)
            self.actor = self._make_actor().to(self.device)
            self.actor_target = self._make_actor().to(self.device)
            self.critic_target = TwinCritic(self.obs_dim, self.action_dim, cfg.critic_hidden).to(self.device)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        for p in (*self.actor_target.parameters(), *self.critic_target.parameters()):
            p.requires_grad_(False)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self._eval_generator = torch.Generator(device=self.device)
        self.rng = np.random.default_rng(cfg.seed)
        self.buffer: ReplayBuffer | None = None

        self.num_timesteps = 0
        self.num_updates = 0
        self._obs: np.ndarray | None = None  # current env observation between learn() calls
        self._episode_return, self._episode_length = 0.0, 0
        #: Training log: finished episodes and per-update losses.
        self.logs: dict[str, list[float]] = {
            "episode_returns": [], "episode_lengths": [], "critic_losses": [], "actor_losses": []}

    def _make_actor(self) -> nn.Module:
        cfg = self.config
        if self.actor_kind == "diffusion":
            return DiffusionActor(self.obs_dim, self.action_dim, cfg.denoising_steps, cfg.beta_schedule,
                                  cfg.actor_hidden, cfg.time_embedding_dim, cfg.straight_through_clip)
        return MLPActor(self.obs_dim, self.action_dim, cfg.actor_hidden)

    # --- action scaling and observation flattening -------------------------------------------

    def scale_action(self, action: np.ndarray) -> np.ndarray:
        """Flat ``[-1, 1]`` actions ``(..., action_dim)`` -> the env's Box bounds and shape ``(..., *shape)``."""
        unit = (np.asarray(action, dtype=np.float64) + 1.0) * 0.5
        out = self._action_low + unit * (self._action_high - self._action_low)
        out = np.clip(out, self._action_low, self._action_high)
        return out.reshape(out.shape[:-1] + self.action_space.shape).astype(self.action_space.dtype)

    def unscale_action(self, action: np.ndarray) -> np.ndarray:
        """Env actions ``(..., *shape)`` -> flat ``[-1, 1]`` actions ``(..., action_dim)``."""
        action = np.asarray(action, dtype=np.float64)
        action = action.reshape(action.shape[: action.ndim - len(self.action_space.shape)] + (self.action_dim,))
        span = np.where(self._action_high > self._action_low, self._action_high - self._action_low, 1.0)
        return (2.0 * (action - self._action_low) / span - 1.0).astype(np.float32)

    def _flatten_obs(self, obs: Any) -> np.ndarray:
        """One observation -> a flat float32 vector."""
        if isinstance(self.observation_space, gym.spaces.Box):
            return np.asarray(obs, dtype=np.float32).reshape(self.obs_dim)
        return np.asarray(gym.spaces.flatten(self.observation_space, obs), dtype=np.float32)

    # --- acting -------------------------------------------------------------------------------

    def _act(self, obs_batch: np.ndarray, generator: torch.Generator, shared_noise: bool = False) -> np.ndarray:
        with torch.no_grad():
            state = torch.as_tensor(obs_batch, dtype=torch.float32, device=self.device)
            if self.actor_kind == "diffusion":
                return self.actor.sample(state, generator, shared_noise).cpu().numpy()
            return self.actor.sample(state, generator).cpu().numpy()

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
        """SB3-like: the env-scaled action for one observation (or a batch ``(n, obs_dim)`` of Box observations).

        ``deterministic=True`` runs the diffusion chain with noise re-seeded from ``config.seed``
        on every call, the same for every observation of a batch, so the same observation always
        gives the same action, alone or in a batch (and a loaded agent the same actions as the
        saved one); ``False`` draws fresh chain noise and adds the exploration noise. Returns
        ``(action, None)``.
        """
        space = self.observation_space
        batched = isinstance(space, gym.spaces.Box) and np.ndim(obs) == len(space.shape) + 1
        if batched:
            obs_batch = np.asarray(obs, dtype=np.float32).reshape(-1, self.obs_dim)
        else:
            obs_batch = self._flatten_obs(obs)[None]
        if deterministic:
            action = self._act(obs_batch, self._eval_generator.manual_seed(self.config.seed), shared_noise=True)
        else:
            action = self._explore(obs_batch)
        action = self.scale_action(action)
        return (action if batched else action[0]), None

    def _explore(self, obs_batch: np.ndarray) -> np.ndarray:
        action = self._act(obs_batch, self.generator)
        noise = self.rng.normal(0.0, self.config.exploration_noise, size=action.shape)
        return np.clip(action + noise, -1.0, 1.0).astype(np.float32)

    def act_time_s(self, obs: Any, repeats: int = 100, warmup: int = 5) -> float:
        """Mean wall-clock seconds of one ``predict(obs)`` decision (after ``warmup`` calls)."""
        for _ in range(warmup):
            self.predict(obs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        for _ in range(repeats):
            self.predict(obs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return (time.perf_counter() - start) / repeats

    # --- learning -----------------------------------------------------------------------------

    def _td_target(self, rewards: torch.Tensor, next_obs: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        """``r + gamma (1 - done) min_k Q'_k(s', pi'(s') + smoothing noise)`` (call under ``no_grad``)."""
        cfg = self.config
        next_actions = self.actor_target.sample(next_obs, self.generator)
        if cfg.target_policy_noise > 0:
            noise = torch.randn(next_actions.shape, device=self.device, generator=self.generator)
            noise = (noise * cfg.target_policy_noise).clamp(-cfg.target_noise_clip, cfg.target_noise_clip)
            next_actions = (next_actions + noise).clamp(-1.0, 1.0)
        return rewards + cfg.gamma * (1.0 - terminated) * self.critic_target.min_q(next_obs, next_actions)

    def train_step(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        """One critic update, and (every ``policy_delay`` updates) one actor update plus soft target updates."""
        cfg = self.config
        obs, actions, rewards, next_obs, terminated = batch

        # Critic: TD target with the minimum of the twin target critics (gamma = 0: the reward alone,
        # as in a contextual bandit, and the target actor's denoising chain is skipped).
        with torch.no_grad():
            if cfg.gamma == 0.0 or bool(terminated.all()):  # no bootstrap: skip the target actor's chain
                target_q = rewards
            else:
                target_q = self._td_target(rewards, next_obs, terminated)
        q1, q2 = self.critic(obs, actions)
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        if cfg.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
        self.critic_optimizer.step()
        self.num_updates += 1
        info = {"critic_loss": critic_loss.item(), "actor_loss": float("nan")}

        # Actor: ascend Q1(s, pi(s)) through the whole denoising chain.
        if self.num_updates % cfg.policy_delay == 0:
            pi, excess = self.actor.sample_with_excess(obs, self.generator)
            q_pi = self.critic.q1(torch.cat([obs, pi], dim=-1)).squeeze(-1)
            q_loss = -q_pi.mean()
            if cfg.normalize_q_loss:
                q_loss = q_loss / q_pi.abs().mean().detach().clamp(min=1e-6)
            actor_loss = q_loss
            if cfg.clip_penalty > 0 and self.actor_kind == "diffusion":
                actor_loss = actor_loss + cfg.clip_penalty * excess
            if cfg.bc_weight > 0 and self.actor_kind == "diffusion":
                actor_loss = actor_loss + cfg.bc_weight * self.actor.bc_loss(obs, actions, self.generator)
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            if cfg.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.max_grad_norm)
            self.actor_optimizer.step()
            # The critic received gradients from the actor loss; they are cleared at its next zero_grad.
            _soft_update(self.critic_target, self.critic, cfg.tau)
            _soft_update(self.actor_target, self.actor, cfg.tau)
            info["actor_loss"] = actor_loss.item()
        return info

    def learn(self, total_timesteps: int, callback: Callback | None = None, progress: bool = False) -> "D3PG":
        """Collect ``total_timesteps`` env steps, learning off-policy from the replay buffer.

        The env is reset with ``seed=config.seed`` on the first call; later calls continue the
        running episode. ``callback(agent, info)`` runs after every env step with ``info`` holding
        ``step``, ``reward``, ``episode_return``/``episode_length`` (``None`` unless an episode just
        ended) and the last ``critic_loss``/``actor_loss``; returning ``False`` stops training.
        ``progress`` prints a line to stderr at every 10% of the run.
        """
        if self.env is None:
            raise RuntimeError("this agent has no env: pass one to D3PG(...) / D3PG.load(..., env=...) to train")
        cfg = self.config
        if self.buffer is None:
            # np.zeros is lazily backed by the OS: a large buffer only costs the memory it fills.
            self.buffer = ReplayBuffer(cfg.buffer_size, self.obs_dim, self.action_dim)
        if self._obs is None:
            obs, _ = self.env.reset(seed=cfg.seed)
            self._obs = self._flatten_obs(obs)
        losses = {"critic_loss": float("nan"), "actor_loss": float("nan")}
        report_every = max(total_timesteps // 10, 1)
        start = time.perf_counter()

        for step in range(total_timesteps):
            # Act: uniform random during warm-up, then the actor plus Gaussian exploration noise.
            if self.num_timesteps < cfg.learning_starts:
                action = self.rng.uniform(-1.0, 1.0, size=self.action_dim).astype(np.float32)
            else:
                action = self._explore(self._obs[None])[0]
            next_obs, reward, terminated, truncated, _ = self.env.step(self.scale_action(action))
            next_obs = self._flatten_obs(next_obs)
            # On truncation gymnasium returns the real last observation, so bootstrapping from it is right.
            self.buffer.add(self._obs, action, float(reward), next_obs, bool(terminated))
            self.num_timesteps += 1
            self._episode_return += float(reward)
            self._episode_length += 1

            episode_return = episode_length = None
            if terminated or truncated:
                episode_return, episode_length = self._episode_return, self._episode_length
                self.logs["episode_returns"].append(episode_return)
                self.logs["episode_lengths"].append(episode_length)
                self._episode_return, self._episode_length = 0.0, 0
                obs, _ = self.env.reset()
                self._obs = self._flatten_obs(obs)
            else:
                self._obs = next_obs

            # Learn.
            if (self.num_timesteps > cfg.learning_starts and len(self.buffer) >= cfg.batch_size
                    and self.num_timesteps % cfg.train_freq == 0):
                for _ in range(cfg.gradient_steps):
                    losses = self.train_step(self.buffer.sample(cfg.batch_size, self.rng, self.device))
                    self.logs["critic_losses"].append(losses["critic_loss"])
                    if not math.isnan(losses["actor_loss"]):
                        self.logs["actor_losses"].append(losses["actor_loss"])

            if progress and (step + 1) % report_every == 0:
                recent = self.logs["episode_returns"][-10:]
                mean_return = f"{np.mean(recent):.3f}" if recent else "n/a"
                rate = (step + 1) / (time.perf_counter() - start)
                print(f"[{self.actor_kind}] step {self.num_timesteps}: mean return (last 10) {mean_return}, "
                      f"critic loss {losses['critic_loss']:.4g}, {rate:.0f} steps/s", file=sys.stderr)
            if callback is not None:
                info = {"step": self.num_timesteps, "reward": float(reward), "episode_return": episode_return,
                        "episode_length": episode_length, **losses}
                if callback(self, info) is False:
                    break
        return self

    # --- persistence --------------------------------------------------------------------------

    def save(self, path: str) -> None:
        """One file (``torch.save`` of a dict): config as JSON, actor kind, spaces' bounds, state dicts."""
        torch.save({
            "format": "d3pg/1",
            "config": self.config.to_json(),
            "actor_kind": self.actor_kind,
            "obs_dim": self.obs_dim,
            "action_low": self._action_low.tolist(),
            "action_high": self._action_high.tolist(),
            "action_shape": list(self.action_space.shape),
            "num_timesteps": self.num_timesteps,
            "num_updates": self.num_updates,
            "actor": self.actor.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
        }, path)

    @classmethod
    def load(cls, path: str, env: gym.Env | None = None, device: str | None = None) -> "D3PG":
        """Rebuild a saved agent (networks, targets, optimisers); ``env`` is only needed to keep training.

        Without ``env`` the observation space is a flat ``Box`` of the saved size and the action
        space the saved Box. ``device`` overrides the saved config's device.
        """
        data = torch.load(path, map_location="cpu", weights_only=True)
        config = D3PGConfig.from_json(data["config"])
        if device is not None:
            config.device = device
        if env is not None:
            obs_space, act_space = env.observation_space, env.action_space
        else:
            obs_space = gym.spaces.Box(-np.inf, np.inf, shape=(int(data["obs_dim"]),), dtype=np.float32)
            shape = tuple(data["action_shape"])
            low = np.asarray(data["action_low"], dtype=np.float32).reshape(shape)
            high = np.asarray(data["action_high"], dtype=np.float32).reshape(shape)
            act_space = gym.spaces.Box(low, high, dtype=np.float32)
        agent = cls.__new__(cls)
        D3PG.__init__(agent, env, config, data["actor_kind"], observation_space=obs_space, action_space=act_space)
        for name in ("actor", "actor_target", "critic", "critic_target", "actor_optimizer", "critic_optimizer"):
            getattr(agent, name).load_state_dict(data[name])
        agent.num_timesteps, agent.num_updates = int(data["num_timesteps"]), int(data["num_updates"])
        return agent


class DDPGMLP(D3PG):
    """The ablation: the same algorithm (twin critics, targets, buffer, exploration) with a tanh-MLP actor."""

    def __init__(self, env: gym.Env | None, config: D3PGConfig | None = None, **spaces: Any):
        super().__init__(env, config, actor="mlp", **spaces)


def make_ddpg(env: gym.Env | None, config: D3PGConfig | None = None, actor: str = "mlp") -> D3PG:
    """Factory for either variant: ``make_ddpg(env, cfg)`` is the MLP ablation, ``actor="diffusion"`` D3PG."""
    return D3PG(env, config, actor=actor)
