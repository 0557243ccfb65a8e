"""Decisions per second of the provisioning environments, beside mobile-env's small central env in the same run.

sim/World-v0 (the world stepped from decision to decision) and sim/Provisioning-v0 (the paper's one-epoch
problem) on each scenario, random actions for ``--seconds`` each, one thread; an episode that ends is reset
with the next seed. Vectorised: SB3's ``DummyVecEnv`` of ``--n-envs`` World-v0 copies in one process and
``SubprocVecEnv`` of ``--n-envs`` processes (decisions of all copies per wall second). The reference is
mobile-env's ``mobile-small-central-v0`` (``pip install -e ".[bench]"``), random actions, same loop.

Usage: ``python scripts/bench_envs.py [SCENARIO ...] [--seconds 5] [--n-envs 2]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.config import load_scenario  # noqa: E402
from sim.rl.provisioning_env import ProvisioningEnv  # noqa: E402
from sim.rl.world_env import WorldEnv, make_world_vec_env  # noqa: E402


def steps_per_s(env, seconds: float) -> float:
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    env.reset(seed=0)
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        steps += 1
        if terminated or truncated:
            env.reset(seed=steps)
    return steps / (time.perf_counter() - start)


def vec_steps_per_s(vec, seconds: float) -> float:
    rng = np.random.default_rng(0)
    vec.reset()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        vec.step(rng.uniform(-1, 1, (vec.num_envs, *vec.action_space.shape)).astype(np.float32))
        steps += vec.num_envs
    return steps / (time.perf_counter() - start)


def mobile_env_steps_per_s(seconds: float) -> float | None:
    """mobile-env's small central environment, random actions (None when mobile-env is not installed)."""
    try:
        import gymnasium as gym
        import mobile_env  # noqa: F401  (registers its environments)
    except ModuleNotFoundError:
        return None
    env = gym.make("mobile-small-central-v0")
    env.action_space.seed(0)
    steps, start = 0, time.perf_counter()
    env.reset(seed=0)
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            env.reset(seed=steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=[str(root / "scenarios" / "three_users.yaml"),
                                                         str(root / "scenarios" / "poisson_100.yaml"),
                                                         str(root / "scenarios" / "paper" / "provisioning_world.yaml")])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--n-envs", type=int, default=2)
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ModuleNotFoundError:
        pass
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; decisions per second, "
          "random actions")
    reference = mobile_env_steps_per_s(args.seconds)
    print("  mobile-env mobile-small-central-v0: " + (f"{reference:.0f}" if reference else
                                                      "not installed (pip install -e '.[bench]')"))
    for path in args.scenarios:
        scenario = load_scenario(path)
        world = steps_per_s(WorldEnv(scenario), args.seconds)
        ratio = f" ({world / reference:.2f}x mobile-env)" if reference else ""
        print(f"  {scenario.name}: sim/World-v0 {world:.0f}{ratio}, "
              f"sim/Provisioning-v0 {steps_per_s(ProvisioningEnv(scenario), args.seconds):.0f}", end="")
        try:
            dummy = make_world_vec_env(scenario, args.n_envs)
        except ModuleNotFoundError:
            print(" (stable-baselines3 not installed: no vectorised figures)")
            continue
        sub = make_world_vec_env(scenario, args.n_envs, subprocesses=True)
        try:
            print(f", World-v0 x {args.n_envs} DummyVecEnv {vec_steps_per_s(dummy, args.seconds):.0f}, "
                  f"SubprocVecEnv {vec_steps_per_s(sub, args.seconds):.0f}")
        finally:
            sub.close()


if __name__ == "__main__":
    main()
