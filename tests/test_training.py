"""`python -m sim train`: learners on sim/Provisioning-v0, curves, checkpoints, resume, and the world running them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.config import parse_scenario
from sim.rl.training import TrainingError, evaluate, load_model, train
from sim.world.simulation import World

pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")

ROOT = Path(__file__).resolve().parents[1]

SMALL = {
    "name": "train_test",
    "generator": {"image_size": 64},
    "training": {
        "episode_length": 4,
        "eval_every_steps": 64,
        "eval_episodes": 2,
        "checkpoint_every_steps": 128,
        "hyperparameters": {
            "ppo": {"n_steps": 32, "batch_size": 16, "n_epochs": 1},
            "sac": {"learning_starts": 16, "batch_size": 16, "buffer_size": 500},
            "d3pg": {"learning_starts": 16, "batch_size": 16, "buffer_size": 500},
            "ddpg": {"learning_starts": 16, "batch_size": 16, "buffer_size": 500},
        },
    },
}


def scenario(**changes):
    return parse_scenario({**SMALL, **changes})


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Small networks: one torch thread (see tests/conftest.py)."""


@pytest.mark.parametrize("algorithm", ["ppo", "sac", "d3pg", "ddpg"])
def test_train_writes_curve_and_checkpoints_and_resumes(tmp_path, algorithm):
    if algorithm in ("d3pg", "ddpg"):
        pytest.importorskip("sim.rl.algos.d3pg")
    sc = scenario()
    result = train(sc, algorithm, steps=128, seed=0, out=tmp_path, quiet=True)
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert curve["steps"].tolist() == [64, 128] and np.isfinite(curve["eval_utility"]).all()
    assert (tmp_path / "checkpoints" / "latest" / "checkpoint.json").exists()
    assert (tmp_path / "checkpoints" / "step00000128").is_dir()
    assert result.steps == 128
    # Resume continues the same curve to the new total.
    train(sc, algorithm, steps=192, seed=0, out=tmp_path, resume=True, quiet=True)
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert curve["steps"].tolist() == [64, 128, 192]
    assert curve["wall_time_s"].is_monotonic_increasing
    # The saved policy evaluates to what the curve recorded.
    model = load_model(algorithm, tmp_path / "checkpoints" / "latest")
    mean, _, _ = evaluate(model, sc, sc.training.eval_episodes, seed=0)
    assert mean == pytest.approx(curve["eval_utility"].iloc[-1])


def test_learned_agent_runs_in_the_world(tmp_path):
    sc = scenario()
    train(sc, "sac", steps=64, seed=1, out=tmp_path, quiet=True)
    world_sc = scenario(
        arrivals={"process": "batch", "n_users": 5},
        service={"max_rounds": 2, "max_images_per_round": 8},
        provisioning_agent={"name": "learned", "params": {"checkpoint": str(tmp_path / "checkpoints" / "latest")}},
    )
    result = World(world_sc, seed=0).run()
    rounds = pd.DataFrame(result.rounds)
    assert len(result.users) == 5
    assert np.allclose(rounds.groupby("epoch")["power_w"].sum(), world_sc.masps[0].p_total_w)
    assert rounds["n_images"].between(1, 8).all()


def test_bad_training_input(tmp_path):
    with pytest.raises(TrainingError, match="unknown algorithm"):
        train(scenario(), "a2c", steps=10, seed=0, out=tmp_path, quiet=True)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(scenario(), "ppo", steps=10, seed=0, out=tmp_path / "empty", resume=True, quiet=True)
    bad = scenario(training={**SMALL["training"], "hyperparameters": {"ppo": {"n_stepz": 4}}})
    with pytest.raises(TrainingError, match="bad hyperparameter"):
        train(bad, "ppo", steps=10, seed=0, out=tmp_path / "bad", quiet=True)


def test_cli_train_and_missing_checkpoint_are_clear(tmp_path):
    path = tmp_path / "s.yaml"
    import yaml

    path.write_text(yaml.safe_dump(SMALL))
    proc = subprocess.run(
        [sys.executable, "-m", "sim", "train", str(path), "--agent", "ppo", "--steps", "64", "--out", str(tmp_path / "o"), "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "curve.csv").exists()
    path.write_text(yaml.safe_dump({**SMALL, "provisioning_agent": {"name": "learned", "params": {"checkpoint": str(tmp_path / "none")}}}))
    proc = subprocess.run([sys.executable, "-m", "sim", "run", str(path), "--quiet", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2 and "not a training checkpoint directory" in proc.stderr and "Traceback" not in proc.stderr


def test_learners_train_in_the_world_and_run_there(tmp_path):
    """training.env: world trains on sim/World-v0 (episodes are world runs) and the checkpoint runs in the world."""
    import json

    from sim.config import AgentConfig
    from sim.rl.registration import WORLD_ENV_ID

    sc = scenario(arrivals={"n_users": 6}, training={**SMALL["training"], "env": "world", "eval_every_steps": 32})
    sc = sc.model_copy(update={"channel": sc.channel.model_copy(update={"delivery": "statistical"})})
    result = train(sc, "ppo", steps=64, seed=0, out=tmp_path, quiet=True)
    meta = json.loads((tmp_path / "checkpoints" / "latest" / "checkpoint.json").read_text())
    assert meta["env"] == WORLD_ENV_ID and result.steps == 64
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert len(curve) == 2 and np.isfinite(curve["eval_utility"]).all()
    agent = AgentConfig(name="learned", params={"checkpoint": str(tmp_path / "checkpoints" / "latest")})
    run = World(sc.model_copy(update={"provisioning_agent": agent}), seed=2).run()
    assert run.summary["users"] == 6 and np.isfinite(run.summary["mean_utility"])
    # the evaluation utility of a world run is its mean utility per user: the same number the world reports
    mean, _, _ = evaluate(load_model("ppo", tmp_path / "checkpoints" / "latest"), sc, 1, 0)
    assert np.isfinite(mean)
