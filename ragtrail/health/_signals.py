"""Drain on SIGTERM: fail readiness first, hand the signal on to the server a little later.

Kubernetes sends SIGTERM and removes the pod from the Service endpoints at the same time, and
the endpoint removal takes a few seconds to reach every node. A server that stops accepting
connections at once drops the requests still routed to it meanwhile; failing readiness and
keeping on serving for ``drain_seconds`` before the server's own graceful shutdown avoids that.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from ragtrail._threads import start_quietly

__all__ = ["install_sigterm_handler"]

_Handler = Callable[[int, "FrameType | None"], Any]


class _Drainable(Protocol):
    def begin_draining(self) -> None: ...


def install_sigterm_handler(
    service: _Drainable,
    *,
    drain_seconds: float = 0.0,
    signum: int = signal.SIGTERM,
) -> Callable[[], None]:
    """On ``signum``: ``service.begin_draining()``, then after ``drain_seconds`` chain to the
    handler that was installed before (the server's graceful shutdown, or the default action).

    Call it from the main thread after the server has installed its own handlers (for
    uvicorn: in the lifespan startup), so the chain reaches them. A second signal during the
    drain chains at once. Returns a function that puts the previous handler back (and
    cancels a drain in progress).
    """
    if drain_seconds < 0:
        raise ValueError(f"drain_seconds must be >= 0; got {drain_seconds}")
    previous = signal.getsignal(signum)
    main_thread = threading.main_thread().ident or 0
    state = {"signalled": False, "chain_now": False}
    timers: list[threading.Timer] = []

    def handler(sig: int, frame: FrameType | None) -> None:
        if state["chain_now"] or state["signalled"] or drain_seconds == 0:
            if not state["signalled"]:
                service.begin_draining()
            _chain(previous, sig, frame)
            return
        state["signalled"] = True
        service.begin_draining()

        def resend() -> None:
            # Re-deliver the signal to the main thread, where Python runs signal handlers and
            # where signal.signal() may be called; aimed at it, the signal also interrupts a
            # main thread blocked in join() or Event.wait().
            state["chain_now"] = True
            if hasattr(signal, "pthread_kill"):
                signal.pthread_kill(main_thread, sig)
            else:  # Windows: no threads to choose between for a signal
                os.kill(os.getpid(), sig)

        timer = threading.Timer(drain_seconds, resend)
        timer.daemon = True
        timers.append(timer)
        start_quietly(timer)

    signal.signal(signum, handler)

    def uninstall() -> None:
        for timer in timers:
            timer.cancel()  # a pending re-delivery would otherwise reach the restored handler
        if signal.getsignal(signum) is handler:
            signal.signal(signum, previous)

    return uninstall


def _chain(previous: _Handler | int | None, sig: int, frame: FrameType | None) -> None:
    if callable(previous):
        previous(sig, frame)
    elif previous == signal.SIG_DFL:
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    # SIG_IGN (or a handler installed outside Python, None): the signal ends here.
