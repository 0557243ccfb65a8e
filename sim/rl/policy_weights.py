"""stable-baselines3 policies saved as tensors plus JSON, loaded back without unpickling anything.

An SB3 ``model.zip`` keeps parts of the model (learning-rate schedules, the policy class) as
cloudpickle: loading one runs whatever code it holds, so a checkpoint from someone else is code.
:func:`save_policy` writes what acting needs as ``policy.pt`` (the policy's ``state_dict``, loaded with
``torch.load(weights_only=True)``) and ``policy.json`` (its class from an allow-list, its spaces and its
JSON-able constructor arguments); :func:`load_policy` rebuilds the policy from them. The result has the
SB3 ``predict(observation, deterministic=...)`` of the model it came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sim.io import write_json

POLICY_WEIGHTS = "policy.pt"
POLICY_SPEC = "policy.json"
FORMAT = "sb3-policy/1"


def _policy_classes() -> dict[str, type]:
    """The policy classes :func:`load_policy` builds (an allow-list: a name in a file picks one of these)."""
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.sac.policies import SACPolicy

    return {"ActorCriticPolicy": ActorCriticPolicy, "SACPolicy": SACPolicy}


def _space_spec(space) -> dict[str, Any]:
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return {"type": "Box", "low": space.low.tolist(), "high": space.high.tolist(), "dtype": str(space.dtype)}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    raise ValueError(f"cannot save a policy for a {type(space).__name__} space")


def _space(spec: dict[str, Any]):
    from gymnasium import spaces

    if spec["type"] == "Box":
        return spaces.Box(np.asarray(spec["low"], dtype=spec["dtype"]), np.asarray(spec["high"], dtype=spec["dtype"]),
                          dtype=spec["dtype"])
    if spec["type"] == "Discrete":
        return spaces.Discrete(int(spec["n"]), start=int(spec["start"]))
    raise ValueError(f"unknown space type {spec['type']!r}")


def _jsonable_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if isinstance(value, type) and issubclass(value, torch.nn.Module):
            out[key] = {"torch.nn": value.__name__}
        else:
            json.dumps(value)  # raises for anything that JSON cannot hold
            out[key] = value
    return out


def _restored_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    import torch

    out = {}
    for key, value in kwargs.items():
        if isinstance(value, dict) and set(value) == {"torch.nn"}:
            cls = getattr(torch.nn, str(value["torch.nn"]), None)
            if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
                raise ValueError(f"{POLICY_SPEC}: {key} names no torch.nn module: {value['torch.nn']!r}")
            out[key] = cls
        else:
            out[key] = value
    return out


def save_policy(model, directory: str | Path) -> None:
    """Write ``policy.pt`` and ``policy.json`` of an SB3 model (PPO, SAC) into ``directory``."""
    import torch

    from sim.io import atomic_path

    directory = Path(directory)
    policy = model.policy
    name = type(policy).__name__
    if name not in _policy_classes():
        raise ValueError(f"cannot save a {name} (known: {', '.join(_policy_classes())})")
    spec = {"format": FORMAT, "class": name, "observation_space": _space_spec(policy.observation_space),
            "action_space": _space_spec(policy.action_space),
            "policy_kwargs": _jsonable_kwargs(dict(getattr(model, "policy_kwargs", {}) or {}))}
    with atomic_path(directory / POLICY_WEIGHTS) as tmp:
        torch.save(policy.state_dict(), tmp)
    write_json(directory / POLICY_SPEC, spec)


def has_policy(directory: str | Path) -> bool:
    directory = Path(directory)
    return (directory / POLICY_WEIGHTS).is_file() and (directory / POLICY_SPEC).is_file()


def load_policy(directory: str | Path):
    """The policy saved by :func:`save_policy`, rebuilt and in evaluation mode (tensors only; nothing unpickled)."""
    import torch

    directory = Path(directory)
    spec = json.loads((directory / POLICY_SPEC).read_text(encoding="utf-8"))
    if spec.get("format") != FORMAT:
        raise ValueError(f"{directory / POLICY_SPEC}: format {spec.get('format')!r}, expected {FORMAT!r}")
    classes = _policy_classes()
    if spec.get("class") not in classes:
        raise ValueError(f"{directory / POLICY_SPEC}: unknown policy class {spec.get('class')!r}")
    policy = classes[spec["class"]](_space(spec["observation_space"]), _space(spec["action_space"]),
                                    lr_schedule=lambda _: 0.0, **_restored_kwargs(spec["policy_kwargs"]))
    state = torch.load(directory / POLICY_WEIGHTS, map_location="cpu", weights_only=True)
    policy.load_state_dict(state)
    policy.set_training_mode(False)
    return policy


__all__ = ["POLICY_SPEC", "POLICY_WEIGHTS", "has_policy", "load_policy", "save_policy"]
