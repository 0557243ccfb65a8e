"""Discrete-event simulator of intelligent mobile AIGC services.

Edge servers (MASPs) generate images from users' prompts, send them over fading
wireless links where bit errors hit the real image bytes, and an assessor scores
what the user receives.
"""

__version__ = "0.1.0"

from sim import compat as _compat

_compat.install()
