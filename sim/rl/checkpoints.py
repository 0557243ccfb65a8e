"""Checkpoints of trained policies: what is saved, where, and how it is loaded back.

A checkpoint is a directory holding the weights and ``checkpoint.json`` (the
algorithm, steps done, the environment's shape), which is what the agents that
run trained policies in the world (:class:`agents.learned.LearnedProvisioning`,
:class:`agents.prompt_learned.LearnedPrompt`) need.

* provisioning learners (``python -m sim train``): ``model.pt`` (D3PG, DDPG:
  tensors only, loaded with ``weights_only=True``), or for PPO and SAC
  ``policy.pt`` + ``policy.json`` (the policy's tensors and its JSON spec:
  :mod:`sim.rl.policy_weights`) beside stable-baselines3's ``model.zip`` (and
  SAC's replay buffer) for resuming training;
* prompt policies (``python -m sim train-prompt``): ``policy.pt`` +
  ``policy.json`` and ``model.zip`` (the PPO policy; GAIL's generator) and, for
  GAIL, ``discriminator.pt`` (tensors only); their ``checkpoint.json`` has
  ``"kind": "prompt"`` and the observation layout.

**A checkpoint can be code.** stable-baselines3's ``model.zip`` and the replay
buffer are unpickled when loaded, which runs whatever they hold. So acting (the
``learned`` agents, evaluation) loads tensors only: ``policy.pt`` / ``model.pt``
with ``torch.load(weights_only=True)``. Resuming training needs the zip: it is
loaded only when ``checkpoint.json`` records its SHA-256 (written by
:func:`save_model`) and the file matches, which catches a file swapped or
corrupted after the fact; a checkpoint without that record (another tool's, or an
old one) loads only with ``trust=True`` (``--trust-checkpoint``, or
``params: {trust: true}`` of a ``learned`` agent). Only trust checkpoints from
sources you would run code from.

torch and stable-baselines3 are imported only when a checkpoint is loaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sim.io import write_json
from sim.rl.policy_weights import has_policy, load_policy, save_policy

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


def file_digest(path: Path) -> str:
    """SHA-256 of a file (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unpickle_allowed(directory: Path, files: list[Path], trust: bool) -> None:
    """Refuse to unpickle ``files`` unless ``checkpoint.json`` vouches for them (SHA-256) or ``trust``."""
    if trust:
        return
    meta_path = directory / CHECKPOINT_META
    recorded = json.loads(meta_path.read_text(encoding="utf-8")).get("sha256", {}) if meta_path.is_file() else {}
    for path in files:
        if path.name not in recorded:
            raise CheckpointError(
                f"{path} is a pickle (stable-baselines3) that this checkpoint's {CHECKPOINT_META} does not vouch for: "
                "loading it runs whatever code it holds. Pass trust=True (--trust-checkpoint, or params: {trust: true}) "
                "only if you trust where it came from")
        if file_digest(path) != recorded[path.name]:
            raise CheckpointError(f"{path} does not match the SHA-256 recorded in {meta_path}: changed since it was "
                                  "saved; refusing to unpickle it (trust=True overrides)")


def load_model(algorithm: str, directory: Path, env=None, trust: bool = False):
    """The learner saved in checkpoint ``directory``.

    Without ``env`` (to act): tensors only (D3PG's ``model.pt``, or PPO's and SAC's ``policy.pt``), nothing
    unpickled; an SB3 checkpoint with no ``policy.pt`` needs ``trust``. With ``env`` (to resume training): the
    full SB3 model, unpickled only when its SHA-256 matches ``checkpoint.json`` or with ``trust``.
    """
    directory = Path(directory)
    path = model_file(algorithm, directory)
    if algorithm in ("ppo", "sac"):
        if env is None and has_policy(directory):
            return load_policy(directory)
        if not path.exists():
            raise CheckpointError(f"no {algorithm} checkpoint at {path}")
        buffer = directory / "replay_buffer.pkl"
        with_buffer = algorithm == "sac" and env is not None and buffer.exists()
        _unpickle_allowed(directory, [path, *([buffer] if with_buffer else [])], trust)
        import stable_baselines3 as sb3

        cls = sb3.PPO if algorithm == "ppo" else sb3.SAC
        model = cls.load(path, env=env, device="cpu")
        if with_buffer:
            model.load_replay_buffer(buffer)
        return model
    if not path.exists():
        raise CheckpointError(f"no {algorithm} checkpoint at {path}")
    from sim.rl.algos.d3pg import D3PG

    return D3PG.load(path, env=env)


def vouch_for(directory: str | Path) -> None:
    """Give an SB3 checkpoint you trust what acting needs without unpickling (``policy.pt``, ``policy.json``) and
    record its pickles' SHA-256 in ``checkpoint.json`` (for checkpoints written before these existed).

    This unpickles the checkpoint once: run it only on checkpoints you made or trust.
    """
    directory = Path(directory)
    meta = json.loads((directory / CHECKPOINT_META).read_text(encoding="utf-8"))
    algorithm = meta["algorithm"]
    if meta.get("kind") == "prompt":
        algorithm = "ppo"
    if algorithm not in ("ppo", "sac", "gail"):
        return  # tensors only already
    import stable_baselines3 as sb3

    model = (sb3.SAC if algorithm == "sac" else sb3.PPO).load(directory / MODEL_FILE, device="cpu")
    save_policy(model, directory)
    digests = {name: file_digest(directory / name) for name in (MODEL_FILE, "replay_buffer.pkl")
               if (directory / name).is_file()}
    write_json(directory / CHECKPOINT_META, {**meta, "sha256": digests})


def save_model(model, algorithm: str, directory: Path, meta: dict[str, Any]) -> None:
    """Save a provisioning learner and its ``checkpoint.json`` (with the SHA-256 of any pickle) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save(model_file(algorithm, directory))
    digests = {}
    if algorithm in ("ppo", "sac"):
        save_policy(model, directory)
        digests[MODEL_FILE] = file_digest(directory / MODEL_FILE)
    if algorithm == "sac":
        model.save_replay_buffer(directory / "replay_buffer.pkl")
        digests["replay_buffer.pkl"] = file_digest(directory / "replay_buffer.pkl")
    write_json(directory / CHECKPOINT_META, {**meta, **({"sha256": digests} if digests else {})})


def load_prompt_checkpoint(directory: str | Path, trust: bool = False) -> tuple[dict[str, Any], Any]:
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
    if has_policy(directory):
        return meta, load_policy(directory)
    if not (directory / MODEL_FILE).is_file():
        raise CheckpointError(f"{directory}: no {MODEL_FILE}")
    _unpickle_allowed(directory, [directory / MODEL_FILE], trust)
    from stable_baselines3 import PPO

    return meta, PPO.load(directory / MODEL_FILE, device="cpu")


def save_prompt_checkpoint(model, algorithm: str, directory: Path, meta: dict[str, Any]) -> None:
    """Save a prompt policy (GAIL: generator and discriminator; PPO: the policy) and its ``checkpoint.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    if algorithm == "gail":
        model.save(directory)
        save_policy(model.ppo, directory)
    else:
        model.save(directory / MODEL_FILE)
        save_policy(model, directory)
    write_json(directory / CHECKPOINT_META, {**meta, "sha256": {MODEL_FILE: file_digest(directory / MODEL_FILE)}})


__all__ = [
    "CHECKPOINT_META",
    "MODEL_FILE",
    "PROMPT_ALGORITHMS",
    "PROVISIONING_ALGORITHMS",
    "CheckpointError",
    "file_digest",
    "load_model",
    "load_prompt_checkpoint",
    "model_file",
    "save_model",
    "save_prompt_checkpoint",
    "vouch_for",
]
