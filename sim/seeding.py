"""One root seed, one independent random stream per component and key.

Every random draw in a replication comes from a :class:`RandomStreams` built
from the replication's root seed. A stream is addressed by a component name
and optional integer keys (user id, round, image index), so that e.g. the
fading of user 3 in round 2 is the same whatever the agents decided for other
users: changing an agent never shifts arrivals, prompts, thresholds or fading.

Streams are derived with :class:`numpy.random.SeedSequence` spawn keys, the
mechanism numpy documents for independent parallel streams.

>>> streams = RandomStreams(7)
>>> a = streams.rng("fading", 3, 2).random()
>>> b = RandomStreams(7).rng("fading", 3, 2).random()
>>> a == b
True
>>> a == streams.rng("fading", 3, 1).random()
False
"""

from __future__ import annotations

import numpy as np

#: Components that draw random numbers. The position of a name is part of the
#: stream's identity, so append new components at the end only.
COMPONENTS: tuple[str, ...] = (
    "arrivals",  # inter-arrival times
    "users",  # prompt, threshold and distance of each user
    "shadowing",  # log-normal shadowing per user and round
    "fading",  # Nakagami-m gain per user, round and image
    "bit_errors",  # which bits flip per image
    "generation",  # generator seeds per user, round and image
    "prompt_effect",  # per-prompt quality offset of the quality model
    "assessor",  # assessor noise, if any
    "provisioning_agent",
    "prompt_agent",
    "statistical_round",  # statistical delivery, keys (user // 256, round): the shadowing, fading, score normals,
    # damage and bit-error uniforms of 256 users' rounds at once; user u's are row u % 256 (sim.world.simulation._RoundDraws)
    "faults",  # random outage times per fault kind and target (MASP, GPU, links, assessor)
    "assessor_faults",  # whether a flaky assessor fails, per user, round and image
)

_COMPONENT_INDEX = {name: i for i, name in enumerate(COMPONENTS)}


class RandomStreams:
    """Independent random generators derived from one root seed."""

    def __init__(self, root_seed: int):
        if root_seed < 0:
            raise ValueError(f"root seed must be >= 0, got {root_seed}")
        self.root_seed = int(root_seed)

    def seed_sequence(self, component: str, *keys: int) -> np.random.SeedSequence:
        """The seed sequence of ``component`` at ``keys``."""
        index = _COMPONENT_INDEX.get(component)
        if index is None:
            raise KeyError(f"unknown random component {component!r}; known: {', '.join(COMPONENTS)}")
        spawn_key = (index, *(int(k) for k in keys))
        return np.random.SeedSequence(entropy=self.root_seed, spawn_key=spawn_key)

    def rng(self, component: str, *keys: int) -> np.random.Generator:
        """A fresh generator for ``component`` at ``keys`` (same keys, same draws)."""
        return np.random.Generator(np.random.PCG64(self.seed_sequence(component, *keys)))

    def integer_seed(self, component: str, *keys: int) -> int:
        """A 31-bit integer seed, for backends that take an integer (e.g. a diffusion pipeline)."""
        return int(self.seed_sequence(component, *keys).generate_state(1, dtype=np.uint32)[0] >> 1)
