"""Drain on SIGTERM: fail readiness first, hand the signal on to the server a little later.

Kubernetes sends SIGTERM and removes the pod from the Service endpoints at the same time, and
the endpoint removal takes a few seconds to reach every node. A server that stops accepting
connections at once drops the requests still routed to it meanwhile; failing readiness and
keeping on serving for ``drain_seconds`` before the server's own graceful shutdown avoids that.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from ragtrail._threads import os_thread_ident, start_timer

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
    uvicorn, hypercorn and granian: in the lifespan startup), so the chain reaches them; a
    handler the running asyncio loop holds (``loop.add_signal_handler``) is taken over too
    (uvloop's are out of reach: docs/health.md lists the servers that drain). A second signal
    during the drain chains at once. Returns a function that puts the previous handler back
    (and cancels a drain in progress).
    """
    if drain_seconds < 0:
        raise ValueError(f"drain_seconds must be >= 0; got {drain_seconds}")
    from_loop = _take_loop_handler(signum)
    previous = signal.getsignal(signum) if from_loop is None else from_loop[1]
    main_thread = os_thread_ident()  # signal.signal() below insists on the main thread
    state = {"signalled": False, "chain_now": False}
    cancels: list[Callable[[], None]] = []

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

        cancels.append(start_timer(drain_seconds, resend, "ragtrail-drain"))

    signal.signal(signum, handler)

    def uninstall() -> None:
        for cancel in cancels:
            cancel()  # a pending re-delivery would otherwise reach the restored handler
        if signal.getsignal(signum) is handler:
            if from_loop is None:
                signal.signal(signum, previous)
            else:
                from_loop[0]()

    return uninstall


def _take_loop_handler(signum: int) -> tuple[Callable[[], None], _Handler] | None:
    """The running asyncio loop's own handler for ``signum`` (hypercorn registers its shutdown
    with ``loop.add_signal_handler``), removed from the loop: (how to put it back, a handler
    that runs it in the loop). None when no loop handles the signal.

    The loop learns of a signal through its wake-up file descriptor whatever Python handler is
    installed, so a drain that only replaced the Python handler let the server stop at once.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    registered = getattr(loop, "_signal_handlers", {}).get(signum)  # no public accessor
    if registered is None or registered.cancelled():
        return None
    callback, args = registered._callback, registered._args
    loop.remove_signal_handler(signum)

    def run_in_loop(sig: int, frame: FrameType | None) -> None:
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop has closed (the server returned): the default action
            _chain(signal.SIG_DFL, sig, frame)

    def restore() -> None:
        try:
            loop.add_signal_handler(signum, callback, *args)
        except (RuntimeError, ValueError):  # the loop closed, or called off the main thread:
            signal.signal(signum, signal.SIG_DFL)  # what the loop's closing would have left

    return restore, run_in_loop


def _chain(previous: _Handler | int | None, sig: int, frame: FrameType | None) -> None:
    if callable(previous):
        previous(sig, frame)
    elif previous == signal.SIG_DFL:
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    # SIG_IGN (or a handler installed outside Python, None): the signal ends here.
