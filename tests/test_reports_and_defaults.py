"""Reports a new user reads (who wins, safe tables, small numbers) and environments that make with defaults."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import sim.rl  # noqa: F401  (registers the environments)
from sim.world.report import MAX_CELL_CHARS, _cell, _fmt, _markdown_table, winners


def _runs(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for agent, series in values.items():
        for seed, v in enumerate(series):
            rows.append({"agent": agent, "seed": seed, "mean_qoe": v, "mean_utility": v, "single_round_success": v,
                         "mean_rounds": -v, "mean_latency_s": -v, "mean_images": -v, "mean_best_score": v,
                         "served_users": v})
    return pd.DataFrame(rows)


def test_who_wins_names_the_best_agent_and_whether_its_lead_is_significant():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 10)
    clear = winners(_runs({"a": list(base), "b": list(base + 0.5 + rng.normal(0, 0.01, 10)), "c": list(base - 1)}))
    utility = clear.set_index("metric").loc["mean_utility"]
    assert utility["best"] == "b" and utility["runner_up"] == "a" and utility["significant"]
    assert utility["lead"] == pytest.approx(0.5, abs=0.01) and utility["ci_low"] > 0
    # lower is better for latency: the same agent wins it (its latency is -value)
    assert clear.set_index("metric").loc["mean_latency_s", "best"] == "b"
    tied = winners(_runs({"a": list(base), "b": list(base + rng.normal(0, 0.5, 10))})).set_index("metric")
    assert not tied.loc["mean_utility", "significant"]


def test_report_tables_survive_any_prompt_and_show_small_numbers():
    assert _cell("a | b") == "a \\| b" and "\n" not in _cell("one\ntwo\x00three")
    long = _cell("word " * 100_000)
    assert len(long) == MAX_CELL_CHARS and long.endswith("…")
    table = _markdown_table(pd.DataFrame({"prompt": ["x|y\nz"], "n": [1]}))
    assert table.splitlines()[2] == "| x\\|y z | 1 |"
    assert _fmt(1.3e-4) == "1.30e-04" and _fmt(0.0) == "0.000" and _fmt(2.5) == "2.500" and _fmt(float("nan")) == "n/a"


@pytest.mark.parametrize("env_id", ["sim/Provisioning-v0", "sim/Prompt-v0", "sim/World-v0"])
def test_every_environment_makes_with_defaults(env_id):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    _, reward, _, _, _ = env.step(env.action_space.sample())
    assert np.isfinite(reward)
