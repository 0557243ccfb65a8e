"""Registries of the simulator's pluggable parts, by name.

Six kinds of part are chosen in a scenario by name:

=====================  ===========================  ===============================================
registry               scenario key                 what a registered object is called with
=====================  ===========================  ===============================================
``PROVISIONING_AGENTS``  ``provisioning_agent.name``  ``cls(context, rng, **params)`` -> ProvisioningAgent
``PROMPT_AGENTS``        ``prompt_agent.name``        ``cls(context, rng, **params)`` -> PromptAgent
``GENERATORS``           ``generator.backend``        ``factory(scenario, quality, prompt_effect_key)`` -> Generator
``ASSESSORS``            ``assessor.backend``         ``factory(scenario, quality)`` -> Assessor
``CORPORA``              ``prompting.corpus``         ``factory(scenario)`` -> PromptCorpus
``CHANNEL_MODELS``       ``channel.model``            ``factory(channel_config)`` -> a channel model
=====================  ===========================  ===============================================

A registry maps a name to an *entry point*, a ``"package.module:attribute"``
string (the attribute may be dotted, ``Class.method``) that is imported only
when the part is built, so listing names imports nothing, and this module
imports nothing of the project. Besides the registered names, every kind
accepts an entry point itself as the name: ``name: "my_package.my_module:MyAgent"``
runs a user's own agent without touching the project (the module must be
importable: installed, or in the directory ``python -m sim`` runs from).
``register(name, target)`` adds a part at run time (a class, a callable or an
entry-point string).

>>> PROVISIONING_AGENTS.names()[:3]
['learned', 'lookahead', 'oracle']
>>> GENERATORS.resolve("no-such-backend")
Traceback (most recent call last):
...
sim.registry.RegistryError: unknown generator backend 'no-such-backend'; known: cache, diffusers, surrogate (or a 'package.module:attribute' entry point)
"""

from __future__ import annotations

import importlib
import re
from typing import Any

#: ``package.module:attribute`` (attribute possibly dotted).
_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class RegistryError(ValueError):
    """A part that cannot be found (unknown name, an entry point that does not import)."""


def is_entry_point(name: str) -> bool:
    """Whether ``name`` has the ``package.module:attribute`` form."""
    return bool(_ENTRY_POINT.match(str(name)))


def load_entry_point(spec: str, kind: str = "part") -> Any:
    """Import ``package.module`` and return ``attribute`` (dotted attributes are followed)."""
    if not is_entry_point(spec):
        raise RegistryError(f"{kind} {spec!r} is not a 'package.module:attribute' entry point")
    module_name, _, attribute = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):  # the user's module itself is missing
            raise RegistryError(
                f"{kind} {spec!r}: cannot import module {module_name!r} ({err}); install it or run from the "
                "directory that holds it"
            ) from None
        raise
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise RegistryError(f"{kind} {spec!r}: module {module_name!r} has no attribute {attribute!r}") from None
    return obj


class Registry:
    """Names of one kind of part, each mapped to a class, a callable or an entry-point string."""

    def __init__(self, kind: str, entries: dict[str, Any] | None = None):
        self.kind = kind
        self._entries: dict[str, Any] = dict(entries or {})

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def describe(self) -> str:
        """The names as a comma-separated list (for help texts and messages)."""
        return ", ".join(self.names())

    def register(self, name: str, target: Any, replace: bool = False) -> None:
        """Add ``target`` (a class, a callable or an entry-point string) under ``name``."""
        if not isinstance(name, str) or not name or ":" in name:
            raise RegistryError(f"a {self.kind} name must be a non-empty string without ':', got {name!r}")
        if name in self._entries and not replace:
            raise RegistryError(f"{self.kind} {name!r} is already registered (pass replace=True to replace it)")
        self._entries[name] = target

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a no-op when it is not registered)."""
        self._entries.pop(name, None)

    def is_known(self, name: str) -> bool:
        """Registered, or an entry point (whether it imports is checked when it is built)."""
        return name in self._entries or is_entry_point(name)

    def check_name(self, name: str) -> str:
        """``name`` if :meth:`is_known`, else a :class:`RegistryError` listing the known names."""
        if not self.is_known(name):
            raise RegistryError(
                f"unknown {self.kind} {name!r}; known: {self.describe()} (or a 'package.module:attribute' entry point)"
            )
        return name

    def resolve(self, name: str) -> Any:
        """The class or callable registered under ``name`` (or that the entry point ``name`` names)."""
        self.check_name(name)
        target = self._entries.get(name, name)
        if isinstance(target, str):
            target = load_entry_point(target, self.kind)
        return target


PROVISIONING_AGENTS = Registry(
    "provisioning agent",
    {
        "static": "agents.static:StaticProvisioning",
        "random": "agents.random:RandomProvisioning",
        "oracle": "agents.oracle:OracleProvisioning",
        "lookahead": "agents.lookahead:LookaheadOracle",
        "learned": "agents.learned:LearnedProvisioning",
    },
)
PROMPT_AGENTS = Registry(
    "prompt agent",
    {
        "raw": "agents.prompt:RawPrompt",
        "random": "agents.prompt:RandomPrompt",
        "empirical": "agents.prompt:EmpiricalPrompt",
        "optimum": "agents.prompt:ModelOptimumPrompt",
        "learned": "agents.prompt_learned:LearnedPrompt",
    },
)
GENERATORS = Registry(
    "generator backend",
    {
        "surrogate": "sim.backends:surrogate_generator",
        "diffusers": "sim.backends:diffusers_generator",
        "cache": "sim.backends:cache_generator",
    },
)
ASSESSORS = Registry(
    "assessor backend",
    {
        "fidelity": "sim.backends:fidelity_assessor",
        "clip": "sim.backends:clip_assessor",
        "brisque": "sim.backends:brisque_assessor",
        "llm": "sim.backends:llm_assessor",
    },
)
CORPORA = Registry(
    "prompt corpus",
    {
        "default": "sim.backends:default_corpus",
        "offline": "sim.backends:offline_corpus",
        "llm": "sim.backends:llm_corpus",
    },
)
CHANNEL_MODELS = Registry(
    "channel model",
    {"nakagami_lognormal": "sim.model.channel:Channel.from_config"},
)

__all__ = [
    "ASSESSORS",
    "CHANNEL_MODELS",
    "CORPORA",
    "GENERATORS",
    "PROMPT_AGENTS",
    "PROVISIONING_AGENTS",
    "Registry",
    "RegistryError",
    "is_entry_point",
    "load_entry_point",
]
