"""Import paths of release 0.1, kept as aliases for one release (0.2); they warn and will be removed in 0.3.

The modules of the flat 0.1 layout moved into packages that show the
architecture (docs/architecture.md). ``import sim.channel`` still works: it
returns the module's new home (the same module object, so patching it patches
the new one) and raises a :class:`DeprecationWarning` naming the new path.
``agents.base`` was split: its types are in :mod:`sim.decisions`, the builders
in :mod:`sim.backends`, the registries in :mod:`sim.registry`; the alias module
holds all of their names, with the 0.1 builder names ``make_provisioning_agent``
and ``make_prompt_agent``.

Installed by ``import sim`` and ``import agents`` (:func:`install`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

#: Old module -> new module(s). A tuple merges the public names of several modules into one alias.
ALIASES: dict[str, str | tuple[str, ...]] = {
    "sim.channel": "sim.model.channel",
    "sim.quality": "sim.model.quality",
    "sim.qoe": "sim.model.qoe",
    "sim.results": "sim.world.records",
    "sim.runner": "sim.world.runner",
    "sim.compare": "sim.world.compare",
    "sim.report": "sim.world.report",
    "sim.envs": ("sim.rl.provisioning_env", "sim.rl.features", "sim.rl.registration"),
    "sim.prompt_env": ("sim.rl.prompt_env", "sim.rl.prompt_features", "sim.rl.registration"),
    "sim.training": ("sim.rl.training", "sim.rl.checkpoints", "sim.rl.evaluation", "sim.rl.provisioning_env"),
    "sim.prompt_training": (
        "sim.rl.prompt_training",
        "sim.rl.prompt_expert",
        "sim.rl.prompt_evaluation",
        "sim.rl.checkpoints",
    ),
    "sim.demo_dataset": "sim.dataset.demonstrations",
    "sim.calibration": "sim.dataset.calibration",
    "agents.base": ("sim.decisions", "sim.backends", "sim.registry"),
    "agents.d3pg": "sim.rl.algos.d3pg",
    "agents.irl": "sim.rl.algos.gail",
}
#: Old names inside a merged alias -> their new names.
RENAMED = {
    "agents.base": {"make_provisioning_agent": "build_provisioning_agent", "make_prompt_agent": "build_prompt_agent"},
}


def _public(module: types.ModuleType) -> dict[str, object]:
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    return {name: getattr(module, name) for name in names if hasattr(module, name)}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, old: str, new: str | tuple[str, ...]):
        self.old, self.new = old, new

    def create_module(self, spec):
        targets = (self.new,) if isinstance(self.new, str) else self.new
        warnings.warn(
            f"{self.old} moved to {' / '.join(targets)} in 0.2; the old path is removed in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        if isinstance(self.new, str):
            module = importlib.import_module(self.new)
            self._spec = module.__spec__  # the import system sets the alias's spec on it; exec_module restores it
            return module
        merged = types.ModuleType(self.old, f"Alias of {', '.join(targets)} (deprecated).")
        for target in targets:
            for name, value in _public(importlib.import_module(target)).items():
                setattr(merged, name, value)
        for old_name, new_name in RENAMED.get(self.old, {}).items():
            setattr(merged, old_name, getattr(merged, new_name))
        return merged

    def exec_module(self, module) -> None:
        if isinstance(self.new, str):
            module.__spec__ = self._spec
        sys.modules[self.old] = module


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in ALIASES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(fullname, ALIASES[fullname]))


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.append(_AliasFinder())


__all__ = ["ALIASES", "install"]
