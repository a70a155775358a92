"""ragtrail's own pseudo-random generator (span IDs, retry jitter), never the app's.

Drawing from the ``random`` module's shared generator would shift the sequence of an app that
seeds it for reproducible runs (an evaluation, a sampled test set) as soon as it is
instrumented, and from a background thread at unpredictable moments. Reseeded in a forked
child, as ``random`` does for its own generator, so workers forked after configuration
(gunicorn ``--preload``) never repeat each other's span IDs.
"""

from __future__ import annotations

import os
import random

__all__ = ["getrandbits", "uniform"]

_generator = random.Random()
getrandbits = _generator.getrandbits
uniform = _generator.uniform

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_generator.seed)
