"""Checkpoints of trained policies: what is saved, where, and how it is loaded back.

A checkpoint is a directory holding the weights and ``checkpoint.json`` (the
algorithm, steps done, the environment's shape), which is what the agents that
run trained policies in the world (:class:`agents.learned.LearnedProvisioning`,
:class:`agents.prompt_learned.LearnedPrompt`) need.

* provisioning learners (``python -m sim train``): ``model.zip`` (PPO, SAC:
  stable-baselines3; SAC also its replay buffer) or ``model.pt`` (D3PG, DDPG:
  tensors only, loaded with ``weights_only=True``);
* prompt policies (``python -m sim train-prompt``): ``model.zip`` (the PPO
  policy; GAIL's generator) and, for GAIL, ``discriminator.pt``; their
  ``checkpoint.json`` has ``"kind": "prompt"`` and the observation layout.

torch and stable-baselines3 are imported only when a checkpoint is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sim.io import write_json

#: The metadata file of every checkpoint directory.
CHECKPOINT_META = "checkpoint.json"
#: A prompt policy's weights (a stable-baselines3 PPO).
MODEL_FILE = "model.zip"
#: Provisioning learners :func:`load_model` knows.
PROVISIONING_ALGORITHMS = ("ppo", "sac", "d3pg", "ddpg")
#: Prompt-policy learners (``python -m sim train-prompt``).
PROMPT_ALGORITHMS = ("gail", "ppo")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, of another kind, incomplete)."""


def model_file(algorithm: str, directory: Path) -> Path:
    """Where a provisioning learner's weights are in a checkpoint directory."""
    return directory / ("model.zip" if algorithm in ("ppo", "sac") else "model.pt")


def load_model(algorithm: str, directory: Path, env=None):
    """The learner saved in checkpoint ``directory``."""
    path = model_file(algorithm, directory)
    if not path.exists():
        raise CheckpointError(f"no {algorithm} checkpoint at {path}")
    if algorithm in ("ppo", "sac"):
        import stable_baselines3 as sb3

        cls = sb3.PPO if algorithm == "ppo" else sb3.SAC
        model = cls.load(path, env=env, device="cpu")
        buffer = directory / "replay_buffer.pkl"
        if algorithm == "sac" and env is not None and buffer.exists():
            model.load_replay_buffer(buffer)
        return model
    from sim.rl.algos.d3pg import D3PG

    return D3PG.load(path, env=env)


def save_model(model, algorithm: str, directory: Path, meta: dict[str, Any]) -> None:
    """Save a provisioning learner and its ``checkpoint.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save(model_file(algorithm, directory))
    if algorithm == "sac":
        model.save_replay_buffer(directory / "replay_buffer.pkl")
    write_json(directory / CHECKPOINT_META, meta)


def load_prompt_checkpoint(directory: str | Path) -> tuple[dict[str, Any], Any]:
    """``(checkpoint.json contents, policy model)`` of a prompt-policy checkpoint directory.

    The model is the stable-baselines3 PPO in ``model.zip`` (GAIL's generator,
    or the PPO baseline); only its ``predict`` is needed to act.
    """
    directory = Path(directory)
    meta_path = directory / CHECKPOINT_META
    if not meta_path.is_file():
        raise CheckpointError(f"{directory}: not a prompt-policy checkpoint directory (no {CHECKPOINT_META})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("kind") != "prompt":
        raise CheckpointError(f"{directory}: holds a {meta.get('algorithm', 'non-prompt')} checkpoint, not a prompt policy")
    if not (directory / MODEL_FILE).is_file():
        raise CheckpointError(f"{directory}: no {MODEL_FILE}")
    from stable_baselines3 import PPO

    return meta, PPO.load(directory / MODEL_FILE, device="cpu")


def save_prompt_checkpoint(model, algorithm: str, directory: Path, meta: dict[str, Any]) -> None:
    """Save a prompt policy (GAIL: generator and discriminator; PPO: the policy) and its ``checkpoint.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    if algorithm == "gail":
        model.save(directory)
    else:
        model.save(directory / MODEL_FILE)
    write_json(directory / CHECKPOINT_META, meta)


__all__ = [
    "CHECKPOINT_META",
    "MODEL_FILE",
    "PROMPT_ALGORITHMS",
    "PROVISIONING_ALGORITHMS",
    "CheckpointError",
    "load_model",
    "load_prompt_checkpoint",
    "model_file",
    "save_model",
    "save_prompt_checkpoint",
]
