"""The deciders the world plugs in.

Provisioning agents (images and power per user): ``static`` (the paper's
baseline), ``random``, ``oracle`` (model-based, knows the world's models),
``learned`` (a trained policy from a checkpoint). Prompt agents (a strategy per
request): ``raw``, ``random``, ``empirical``, ``learned``.

They implement the interfaces of :mod:`sim.decisions` and are registered by name
in :mod:`sim.registry`; :mod:`sim.agent_checker` checks any agent against the
contract. Adding one is one file (docs/extending.md).
"""

from sim import compat as _compat

_compat.install()
