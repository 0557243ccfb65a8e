"""Decisions per second of the provisioning environments: sim/World-v0 (the world) and sim/Provisioning-v0.

Random actions for ``--seconds`` each, on one thread; an episode that ends is reset with the next
seed. Also SB3's vectorised form of the world environment (``DummyVecEnv`` of ``--n-envs`` copies)
when stable-baselines3 is installed.

Usage: ``python scripts/bench_envs.py [SCENARIO ...] [--seconds 5] [--n-envs 4]``
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=[str(root / "scenarios" / "three_users.yaml"),
                                                         str(root / "scenarios" / "poisson_100.yaml")])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--n-envs", type=int, default=4)
    args = parser.parse_args()
    print(f"{platform.machine()}, Python {platform.python_version()}; decisions per second, random actions")
    for path in args.scenarios:
        scenario = load_scenario(path)
        print(f"  {scenario.name}: sim/World-v0 {steps_per_s(WorldEnv(scenario), args.seconds):.0f}, "
              f"sim/Provisioning-v0 {steps_per_s(ProvisioningEnv(scenario), args.seconds):.0f}", end="")
        try:
            vec = make_world_vec_env(scenario, args.n_envs)
        except ModuleNotFoundError:
            print(" (stable-baselines3 not installed: no vectorised figure)")
            continue
        print(f", World-v0 x {args.n_envs} (DummyVecEnv) {vec_steps_per_s(vec, args.seconds):.0f}")


if __name__ == "__main__":
    main()
