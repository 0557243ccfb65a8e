"""Speed of the provisioning environment and agents.

Prints environment steps/s (random actions), training steps/s per learner (PPO, SAC, D3PG, DDPG)
on ``sim/Provisioning-v0``, D3PG's per-decision latency for T = 1, 3, 5, 10 denoising steps, and
the oracle's decisions/s. ``--to-oracle STEPS`` also trains each of ``--to-oracle-agents`` (default D3PG) in chunks of
``training.eval_every_steps`` (up to STEPS environment steps) and reports the wall time until its
evaluation utility comes within 2% of the oracle's on the same evaluation episodes.

Usage: ``python scripts/bench_agents.py [SCENARIO] [--train-steps 2000] [--to-oracle 0] [--to-oracle-agents d3pg,ppo]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.backends import agent_context, build_provisioning_agent  # noqa: E402
from sim.config import load_scenario  # noqa: E402
from sim.rl.evaluation import agent_decider, evaluate, evaluate_policy  # noqa: E402
from sim.rl.provisioning_env import make_env  # noqa: E402
from sim.rl.training import build_model  # noqa: E402


def oracle_level(scenario, episodes: int, seed: int) -> tuple[float, float]:
    """Mean utility per decision of the oracle on the evaluation episodes of ``seed``, and decisions/s."""
    context = agent_context(scenario)
    oracle = build_provisioning_agent("oracle", {"strategy": scenario.training.strategy}, context, np.random.default_rng(0))
    started = time.perf_counter()
    frame = evaluate_policy(agent_decider(oracle), scenario, episodes, seed)
    decisions = episodes * scenario.training.episode_length
    return float(frame["utility"].mean()), decisions / (time.perf_counter() - started)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default=str(root / "scenarios" / "paper" / "provisioning.yaml"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as in python -m sim paper)")
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--to-oracle", type=int, default=0, help="step budget to come within 2%% of the oracle (0: skip)")
    parser.add_argument("--to-oracle-agents", default="d3pg", help="learners for --to-oracle, comma-separated (default d3pg)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    scenario = load_scenario(args.scenario)

    env = make_env(scenario)
    env.reset(seed=0)
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < 3.0:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            env.reset()
    print(f"environment: {steps / (time.perf_counter() - started):.0f} steps/s (random actions, Q={env.n_users})")

    for algorithm in ("ppo", "sac", "d3pg", "ddpg"):
        env = make_env(scenario)
        model = build_model(algorithm, env, 0, scenario.training.hyperparameters.get(algorithm, {}))
        started = time.perf_counter()
        model.learn(total_timesteps=args.train_steps)
        print(f"{algorithm}: {args.train_steps / (time.perf_counter() - started):.0f} training steps/s "
              f"({args.train_steps} steps, updates included after learning_starts)")

    from sim.rl.algos.d3pg import D3PG, D3PGConfig

    obs, _ = make_env(scenario).reset(seed=0)
    for t in (1, 3, 5, 10):
        agent = D3PG(make_env(scenario), D3PGConfig(denoising_steps=t))
        print(f"d3pg T={t}: {1000 * agent.act_time_s(obs, repeats=200):.2f} ms per decision")

    level, rate = oracle_level(scenario, episodes=2, seed=0)
    print(f"oracle: {rate:.2f} decisions/s; evaluation utility {level:.3f} per decision")

    if args.to_oracle:
        episodes = scenario.training.eval_episodes
        level, _ = oracle_level(scenario, episodes, seed=0)
        for algorithm in args.to_oracle_agents.split(","):
            env = make_env(scenario)
            model = build_model(algorithm, env, 0, scenario.training.hyperparameters.get(algorithm, {}))
            done, started = 0, time.perf_counter()
            while done < args.to_oracle:
                chunk = min(scenario.training.eval_every_steps, args.to_oracle - done)
                if algorithm in ("ppo", "sac"):
                    model.learn(total_timesteps=chunk, reset_num_timesteps=False)
                else:
                    model.learn(total_timesteps=chunk)
                done += chunk
                mean, _, _ = evaluate(model, scenario, episodes, seed=0)
                gap = (level - mean) / abs(level)
                print(f"  {algorithm} {done} steps: {mean:.3f} vs oracle {level:.3f} (gap {100 * gap:.1f}%)")
                if gap <= 0.02:
                    print(f"{algorithm} within 2% of the oracle after {done} steps, "
                          f"{time.perf_counter() - started:.0f} s (evaluations included)")
                    break
            else:
                print(f"{algorithm} not within 2% of the oracle after {done} steps ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
