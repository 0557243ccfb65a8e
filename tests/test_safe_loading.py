"""Checkpoints load without unpickling code; a pickle loads only when vouched for or trusted."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
sb3 = pytest.importorskip("stable_baselines3")

from sim.config import parse_scenario  # noqa: E402
from sim.rl.checkpoints import CHECKPOINT_META, CheckpointError, load_model  # noqa: E402
from sim.rl.training import train  # noqa: E402

SMALL = {"name": "safe", "training": {"episode_length": 2, "eval_every_steps": 32, "eval_episodes": 1,
                                      "hyperparameters": {"ppo": {"n_steps": 16, "batch_size": 8},
                                                          "sac": {"learning_starts": 8, "batch_size": 8}}}}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, one_torch_thread):
    scenario = parse_scenario(SMALL)
    out = {}
    for algorithm in ("ppo", "sac"):
        root = tmp_path_factory.mktemp(algorithm)
        train(scenario, algorithm, 32, 0, root, quiet=True)
        out[algorithm] = root / "checkpoints" / "latest"
    return scenario, out


def _no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a stable-baselines3 zip was unpickled")

    monkeypatch.setattr(sb3.PPO, "load", refuse)
    monkeypatch.setattr(sb3.SAC, "load", refuse)


@pytest.mark.parametrize("algorithm", ["ppo", "sac"])
def test_acting_loads_tensors_only(checkpoints, monkeypatch, algorithm):
    scenario, dirs = checkpoints
    full = load_model(algorithm, dirs[algorithm], trust=True)  # the zip, for comparison
    obs = np.random.default_rng(0).uniform(-1, 1, (8, full.observation_space.shape[0])).astype(np.float32)
    expected, _ = full.predict(obs, deterministic=True)
    _no_unpickling(monkeypatch)
    acting = load_model(algorithm, dirs[algorithm])
    got, _ = acting.predict(obs, deterministic=True)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # and the world's learned agent runs it the same way
    from sim.backends import agent_context, build_provisioning_agent

    agent = build_provisioning_agent("learned", {"checkpoint": str(dirs[algorithm])}, agent_context(scenario),
                                     np.random.default_rng(0))
    assert type(agent.model).__name__ == ("ActorCriticPolicy" if algorithm == "ppo" else "SACPolicy")


def _zip_only(source, target):
    """A copy of a checkpoint as another tool (or an older version) would leave it: the zip, no record of it."""
    shutil.copytree(source, target)
    for name in ("policy.pt", "policy.json"):
        (target / name).unlink()
    meta = json.loads((target / CHECKPOINT_META).read_text())
    meta.pop("sha256")
    (target / CHECKPOINT_META).write_text(json.dumps(meta))
    return target


def test_a_zip_nobody_vouched_for_needs_trust(checkpoints, tmp_path):
    _, dirs = checkpoints
    foreign = _zip_only(dirs["ppo"], tmp_path / "foreign")
    with pytest.raises(CheckpointError, match="runs whatever code it holds"):
        load_model("ppo", foreign)
    assert load_model("ppo", foreign, trust=True) is not None
    from sim.backends import AgentError, agent_context, build_provisioning_agent
    from sim.config import parse_scenario as ps

    context = agent_context(ps(SMALL))
    with pytest.raises((AgentError, CheckpointError, ValueError), match="code"):
        build_provisioning_agent("learned", {"checkpoint": str(foreign)}, context, np.random.default_rng(0))
    assert build_provisioning_agent("learned", {"checkpoint": str(foreign), "trust": True}, context,
                                    np.random.default_rng(0)) is not None


def test_resuming_checks_the_recorded_digest(checkpoints, tmp_path):
    scenario, dirs = checkpoints
    from sim.rl.world_env import make_training_env

    env = make_training_env(scenario)
    assert load_model("sac", dirs["sac"], env=env) is not None  # vouched for by checkpoint.json
    tampered = tmp_path / "tampered"
    shutil.copytree(dirs["sac"], tampered)
    with open(tampered / "model.zip", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(CheckpointError, match="does not match the SHA-256"):
        load_model("sac", tampered, env=env)


def test_vouching_for_an_old_checkpoint_lets_it_act_without_trust(checkpoints, tmp_path):
    from sim.rl.checkpoints import vouch_for

    _, dirs = checkpoints
    old = _zip_only(dirs["sac"], tmp_path / "old")
    with pytest.raises(CheckpointError):
        load_model("sac", old)
    vouch_for(old)
    assert load_model("sac", old) is not None and "replay_buffer.pkl" in json.loads(
        (old / CHECKPOINT_META).read_text())["sha256"]
