"""GAIL for the prompt-engineering policy: a discriminator against the expert, PPO as the generator.

Generative adversarial imitation learning (Ho & Ermon, 2016), as the D3PG paper's IRL prompt
agent uses it, in own PyTorch around stable-baselines3's PPO:

* **Discriminator** ``D_w(s, a) = sigmoid(f_w([s, onehot(a)]))``, an MLP on the observation
  (optionally without its first ``disc_obs_start`` entries, see :class:`GAILConfig`)
  concatenated with the one-hot action, trained with binary cross-entropy to output 1 on
  expert pairs and 0 on the policy's pairs (optionally with a gradient penalty
  ``lambda * (||grad_x f_w(x)|| - 1)^2`` on random interpolates of expert and policy inputs).
* **Generator reward** ``r(s, a) = -log(1 - D_w(s, a)) = softplus(f_w(s, a))`` (clipped at
  ``reward_clip``): large where the discriminator takes the pair for the expert's. (The
  paper's ``log(1 - D)`` is the generator's loss; its negative is this reward.)
* **Generator**: PPO on the environment with its rewards replaced. After every PPO rollout,
  a callback (1) trains the discriminator on that rollout's (s, a) pairs against an equal
  number of expert pairs per minibatch, (2) rewrites the rollout buffer's rewards with the
  updated discriminator and (3) recomputes returns and advantages; then PPO updates. The
  environment's own reward is never used (its mean is logged as ``env_reward``).
* **Behaviour-cloning warm start** (optional, ``bc_epochs``): before the first rollout,
  minimise the cross-entropy of PPO's action logits on the expert pairs.

``gamma`` defaults to 0: in :class:`sim.rl.prompt_env.PromptEnv` a round's outcome does not depend
on earlier actions, and with ``gamma > 0`` the always-positive GAIL reward would pay the policy
for making episodes longer (the survival bias of ``-log(1 - D)``).

Usage::

    env = PromptEnv(scenario, prompts=train_prompts)
    obs, actions = expert_pairs(expert, scenario, train_prompts)      # sim.rl.prompt_training
    gail = GAIL(env, obs, actions, GAILConfig(seed=0, bc_epochs=20))
    gail.learn(20_000)
    action, _ = gail.predict(obs[0], deterministic=True)
    gail.save("ckpt/"); gail = GAIL.load("ckpt/", env)

It works from small demonstration sets (tens of prompts: a few hundred pairs). Everything
random derives from ``config.seed`` (PPO's seed, the discriminator's initialisation inside
:func:`torch.random.fork_rng`, the expert minibatches).

Importing this module does not need torch; building a :class:`GAIL` does (the ``learn`` extra).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sim.io import write_with

try:  # the learn extra; without it the module imports and GAIL() says what to install
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError:  # pragma: no cover - exercised only without torch
    torch = None  # type: ignore[assignment]

#: File names inside a GAIL checkpoint directory.
POLICY_FILE = "model.zip"
DISCRIMINATOR_FILE = "discriminator.pt"


@dataclass
class GAILConfig:
    """Hyperparameters of :class:`GAIL` (CleanRL style: every knob in one place)."""

    #: Seed of everything random (PPO, discriminator init, expert minibatches).
    seed: int = 0

    # -- generator: stable-baselines3 PPO ----------------------------------------------------
    #: PPO's Adam learning rate.
    learning_rate: float = 3e-4
    #: Environment steps per PPO rollout (and per discriminator update round).
    n_steps: int = 512
    #: PPO minibatch size.
    batch_size: int = 64
    #: PPO epochs per rollout.
    n_epochs: int = 4
    #: Discount; 0 because rounds are independent (see the module docstring).
    gamma: float = 0.0
    #: GAE lambda.
    gae_lambda: float = 0.95
    #: PPO clip range.
    clip_range: float = 0.2
    #: Entropy bonus (keeps the generator trying the actions the discriminator has not yet judged).
    ent_coef: float = 0.01
    #: Hidden layers of PPO's policy and value networks.
    net_arch: tuple[int, ...] = (64, 64)

    # -- discriminator ----------------------------------------------------------------------
    #: Hidden layers of the discriminator MLP (tanh).
    disc_hidden: tuple[int, ...] = (64, 64)
    #: Observation entries before this index are hidden from the discriminator. In PromptEnv the
    #: first ``7 H`` entries are the user's history of (the policy's own) past strategies; hiding
    #: them (``disc_obs_start = 7 H``) makes the discriminator judge the current choice for the
    #: prompt and power instead of telling policy from expert by their past actions.
    disc_obs_start: int = 0
    #: Discriminator Adam learning rate.
    disc_lr: float = 1e-3
    #: Passes over each rollout's policy pairs per discriminator update.
    disc_epochs: int = 10
    #: Policy pairs per discriminator minibatch (paired with as many expert pairs).
    disc_batch_size: int = 128
    #: Weight of the gradient penalty (0: off).
    grad_penalty: float = 0.0
    #: Upper clip of the reward ``-log(1 - D)``.
    reward_clip: float = 10.0

    # -- behaviour-cloning warm start ---------------------------------------------------------
    #: Epochs of cross-entropy on the expert pairs before the first rollout (0: off).
    bc_epochs: int = 0
    #: BC minibatch size.
    bc_batch_size: int = 64
    #: BC Adam learning rate.
    bc_lr: float = 1e-3

    def __post_init__(self) -> None:
        self.net_arch = tuple(int(h) for h in self.net_arch)
        self.disc_hidden = tuple(int(h) for h in self.disc_hidden)
        for name in ("n_steps", "batch_size", "n_epochs", "disc_epochs", "disc_batch_size", "bc_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("bc_epochs", "disc_obs_start"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.grad_penalty < 0 or not self.reward_clip > 0:
            raise ValueError("grad_penalty must be >= 0 and reward_clip > 0")


def _require_torch() -> None:
    if torch is None:
        raise ImportError("GAIL needs torch and stable-baselines3 (the learn extra): pip install torch stable-baselines3")


def build_discriminator(in_dim: int, hidden: tuple[int, ...]) -> "nn.Module":
    """The discriminator MLP: ``in_dim -> hidden... -> 1`` logit, tanh activations."""
    _require_torch()
    layers: list[nn.Module] = []
    last = int(in_dim)
    for h in hidden:
        layers += [nn.Linear(last, int(h)), nn.Tanh()]
        last = int(h)
    layers.append(nn.Linear(last, 1))
    return nn.Sequential(*layers)


def _make_callback(gail: "GAIL"):
    from stable_baselines3.common.callbacks import BaseCallback

    class _RelabelCallback(BaseCallback):
        """After each rollout: train the discriminator, rewrite the buffer's rewards, redo GAE."""

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            buffer = self.model.rollout_buffer
            obs = buffer.observations.reshape(-1, gail.obs_dim)
            actions = buffer.actions.reshape(-1).astype(np.int64)
            env_reward = float(buffer.rewards.mean())
            stats = gail.train_discriminator(obs, actions)
            rewards = gail.reward(obs, actions)
            buffer.rewards[:] = rewards.reshape(buffer.rewards.shape)
            buffer.compute_returns_and_advantage(last_values=self.locals["values"], dones=self.locals["dones"])
            gail.last_stats = {**stats, "reward": float(rewards.mean()), "env_reward": env_reward}
            gail.history.append({"timesteps": int(self.model.num_timesteps), **gail.last_stats})

    return _RelabelCallback()


class GAIL:
    """GAIL with a PPO generator on a discrete-action gymnasium env (see the module docstring).

    ``expert_obs`` (n, d) and ``expert_actions`` (n,) are the expert's pairs in
    the env's observation format. ``learn``, ``predict``, ``num_timesteps``,
    ``save`` and ``load`` follow stable-baselines3.
    """

    def __init__(self, env, expert_obs: np.ndarray, expert_actions: np.ndarray, config: GAILConfig | None = None,
                 _ppo=None):
        _require_torch()
        import stable_baselines3 as sb3
        from gymnasium import spaces

        self.config = config if config is not None else GAILConfig()
        c = self.config
        if env is not None and not isinstance(env.action_space, spaces.Discrete):
            raise ValueError("GAIL here needs a Discrete action space")
        self.expert_obs = np.asarray(expert_obs, dtype=np.float32)
        self.expert_actions = np.asarray(expert_actions, dtype=np.int64).ravel()
        if self.expert_obs.ndim != 2 or len(self.expert_obs) != len(self.expert_actions) or len(self.expert_obs) == 0:
            raise ValueError(
                f"expert_obs must be (n, d) with n = len(expert_actions) > 0, got {self.expert_obs.shape} and "
                f"{self.expert_actions.shape}"
            )
        if _ppo is not None:
            self.ppo = _ppo
        else:
            self.ppo = sb3.PPO(
                "MlpPolicy", env, learning_rate=c.learning_rate, n_steps=c.n_steps, batch_size=c.batch_size,
                n_epochs=c.n_epochs, gamma=c.gamma, gae_lambda=c.gae_lambda, clip_range=c.clip_range,
                ent_coef=c.ent_coef, policy_kwargs={"net_arch": list(c.net_arch)}, seed=c.seed, verbose=0, device="cpu",
            )
        self.obs_dim = int(np.prod(self.ppo.observation_space.shape))
        self.n_actions = int(self.ppo.action_space.n)
        if self.expert_obs.shape[1] != self.obs_dim:
            raise ValueError(f"expert observations have {self.expert_obs.shape[1]} entries, the env's {self.obs_dim}")
        if self.expert_actions.min() < 0 or self.expert_actions.max() >= self.n_actions:
            raise ValueError(f"expert actions must be in 0..{self.n_actions - 1}")
        if c.disc_obs_start >= self.obs_dim:
            raise ValueError(f"disc_obs_start ({c.disc_obs_start}) must be below the observation size {self.obs_dim}")
        with torch.random.fork_rng():
            torch.manual_seed(c.seed)
            self.discriminator = build_discriminator(self.obs_dim - c.disc_obs_start + self.n_actions, c.disc_hidden)
        self.disc_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=c.disc_lr)
        self._rng = np.random.default_rng(c.seed)
        self.bc_done = c.bc_epochs == 0
        self.bc_loss: float = math.nan
        self.last_stats: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self._callback = _make_callback(self)

    # -- discriminator ----------------------------------------------------------------------------

    def _inputs(self, obs: np.ndarray, actions: np.ndarray) -> "torch.Tensor":
        o = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(-1, self.obs_dim)[:, self.config.disc_obs_start:])
        a = F.one_hot(torch.as_tensor(np.asarray(actions, dtype=np.int64).ravel()), self.n_actions).float()
        return torch.cat([o, a], dim=1)

    def logits(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``f_w(s, a)``: the discriminator's logits (``D = sigmoid(logit)``, 1 = expert)."""
        with torch.no_grad():
            return self.discriminator(self._inputs(obs, actions)).squeeze(1).numpy()

    def reward(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The generator's reward ``-log(1 - D(s, a)) = softplus(logit)``, clipped at ``reward_clip``."""
        with torch.no_grad():
            r = F.softplus(self.discriminator(self._inputs(obs, actions)).squeeze(1))
        return np.minimum(r.numpy(), self.config.reward_clip).astype(np.float32)

    def train_discriminator(self, policy_obs: np.ndarray, policy_actions: np.ndarray,
                            epochs: int | None = None) -> dict[str, float]:
        """BCE updates on policy pairs (label 0) against random expert pairs (label 1); returns mean stats."""
        c = self.config
        n = len(policy_actions)
        x_policy = self._inputs(policy_obs, policy_actions)
        x_expert_all = self._inputs(self.expert_obs, self.expert_actions)
        losses, acc_e, acc_p, gps = [], [], [], []
        bs = min(c.disc_batch_size, n)
        for _ in range(c.disc_epochs if epochs is None else int(epochs)):
            order = self._rng.permutation(n)
            for start in range(0, n - bs + 1, bs):
                xp = x_policy[torch.as_tensor(order[start:start + bs])]
                xe = x_expert_all[torch.as_tensor(self._rng.integers(len(self.expert_actions), size=bs))]
                le, lp = self.discriminator(xe).squeeze(1), self.discriminator(xp).squeeze(1)
                loss = F.binary_cross_entropy_with_logits(le, torch.ones_like(le)) + F.binary_cross_entropy_with_logits(
                    lp, torch.zeros_like(lp))
                if c.grad_penalty > 0:
                    alpha = torch.as_tensor(self._rng.random((bs, 1)), dtype=torch.float32)
                    x = (alpha * xe + (1 - alpha) * xp).requires_grad_(True)
                    (grad,) = torch.autograd.grad(self.discriminator(x).sum(), x, create_graph=True)
                    gp = ((grad.norm(dim=1) - 1.0) ** 2).mean()
                    loss = loss + c.grad_penalty * gp
                    gps.append(float(gp.detach()))
                self.disc_optimizer.zero_grad()
                loss.backward()
                self.disc_optimizer.step()
                losses.append(float(loss.detach()))
                acc_e.append(float((le > 0).float().mean()))
                acc_p.append(float((lp < 0).float().mean()))
        return {
            "loss": float(np.mean(losses)) if losses else math.nan,
            "expert_accuracy": float(np.mean(acc_e)) if acc_e else math.nan,
            "policy_accuracy": float(np.mean(acc_p)) if acc_p else math.nan,
            "grad_penalty": float(np.mean(gps)) if gps else 0.0,
        }

    # -- generator --------------------------------------------------------------------------------

    def behaviour_clone(self, epochs: int | None = None) -> float:
        """Cross-entropy of PPO's action distribution on the expert pairs; returns the last epoch's mean loss."""
        c = self.config
        policy = self.ppo.policy
        optimizer = torch.optim.Adam(policy.parameters(), lr=c.bc_lr)
        obs = torch.as_tensor(self.expert_obs)
        actions = torch.as_tensor(self.expert_actions)
        n = len(actions)
        loss_value = math.nan
        policy.set_training_mode(True)
        for _ in range(c.bc_epochs if epochs is None else int(epochs)):
            order = torch.as_tensor(self._rng.permutation(n))
            losses = []
            for start in range(0, n, c.bc_batch_size):
                idx = order[start:start + c.bc_batch_size]
                loss = -policy.get_distribution(obs[idx]).log_prob(actions[idx]).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            loss_value = float(np.mean(losses))
        policy.set_training_mode(False)
        self.bc_loss = loss_value
        self.bc_done = True
        return loss_value

    def learn(self, total_timesteps: int, callback=None, reset_num_timesteps: bool = False) -> "GAIL":
        """Run the BC warm start once (if configured), then ``total_timesteps`` more PPO steps with GAIL rewards."""
        if not self.bc_done:
            self.behaviour_clone()
        callbacks = [self._callback] + ([callback] if callback is not None else [])
        self.ppo.learn(total_timesteps=int(total_timesteps), callback=callbacks, reset_num_timesteps=reset_num_timesteps)
        return self

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        """The generator's action (stable-baselines3's ``predict``)."""
        return self.ppo.predict(observation, state=state, episode_start=episode_start, deterministic=deterministic)

    @property
    def num_timesteps(self) -> int:
        return int(self.ppo.num_timesteps)

    # -- persistence ------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Write ``model.zip`` (the PPO generator) and ``discriminator.pt`` (weights, optimiser, config, expert pairs)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.ppo.save(directory / POLICY_FILE)
        state = {
            "config": json.loads(json.dumps(asdict(self.config))),
            "obs_dim": self.obs_dim,
            "n_actions": self.n_actions,
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.disc_optimizer.state_dict(),
            "expert_obs": torch.as_tensor(self.expert_obs),
            "expert_actions": torch.as_tensor(self.expert_actions),
            "bc_done": self.bc_done,
            "bc_loss": self.bc_loss,
        }
        write_with(directory / DISCRIMINATOR_FILE, lambda tmp: torch.save(state, tmp))

    @classmethod
    def load(cls, directory: str | Path, env=None) -> "GAIL":
        """A GAIL saved by :meth:`save`; pass ``env`` to continue training (``predict`` works without)."""
        _require_torch()
        import stable_baselines3 as sb3

        directory = Path(directory)
        for name in (POLICY_FILE, DISCRIMINATOR_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory}: no {name} (not a GAIL checkpoint)")
        state = torch.load(directory / DISCRIMINATOR_FILE, map_location="cpu", weights_only=True)
        config = GAILConfig(**state["config"])
        ppo = sb3.PPO.load(directory / POLICY_FILE, env=env, device="cpu")
        gail = cls(env, state["expert_obs"].numpy(), state["expert_actions"].numpy(), config, _ppo=ppo)
        gail.discriminator.load_state_dict(state["discriminator"])
        gail.disc_optimizer.load_state_dict(state["optimizer"])
        gail.bc_done, gail.bc_loss = bool(state["bc_done"]), float(state["bc_loss"])
        return gail


__all__ = ["DISCRIMINATOR_FILE", "GAIL", "GAILConfig", "POLICY_FILE", "build_discriminator"]
