"""Exit handlers that also run when a ``multiprocessing`` worker process ends.

multiprocessing ends its worker processes (``ProcessPoolExecutor``, ``Pool``, ``Process``) with
``os._exit()`` after running its own finalizers, so ``atexit`` handlers never run there: the
spans a pool worker recorded were still in its writer's queue when it exited, and were lost.
Handlers given to ``at_exit`` are also registered as multiprocessing finalizers in such a
worker: in a forked one through multiprocessing's after-fork hook (its bootstrap clears the
finalizers it inherited), in a spawned one when they are registered there.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable

__all__ = ["at_exit"]

_handlers: list[Callable[[], object]] = []
# Set in a forked child once its after-fork callback is registered: a worker it forks inherits
# that registration, and registering again there would run every handler twice.
_registered_after_fork = False


def at_exit(handler: Callable[[], object]) -> None:
    """``atexit.register(handler)``, and at the exit of multiprocessing workers too."""
    atexit.register(handler)
    _handlers.append(handler)
    multiprocessing = sys.modules.get("multiprocessing")
    # A worker already running (configured in a pool's initializer, or late). A spawned one
    # ends with sys.exit(), which runs atexit handlers itself.
    if multiprocessing is not None and multiprocessing.parent_process() is not None \
            and multiprocessing.get_start_method(allow_none=True) != "spawn":
        _finalize_in_worker([handler])


def _finalize_in_worker(handlers: list[Callable[[], object]]) -> None:
    from multiprocessing import util

    for handler in handlers:
        util.Finalize(None, handler, exitpriority=0)


def _after_fork_in_child() -> None:
    global _registered_after_fork
    util = sys.modules.get("multiprocessing.util")
    if util is not None and _handlers and not _registered_after_fork:
        _registered_after_fork = True
        # Runs only if multiprocessing made this fork, after it cleared the inherited ones.
        util.register_after_fork(_after_fork_in_child,
                                 lambda _: _finalize_in_worker(list(_handlers)))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
