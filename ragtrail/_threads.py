"""Background threads that leave the process's signals to the main thread.

Python runs signal handlers on the main thread only. When the kernel hands a process-directed
signal (the kubelet's SIGTERM) to some other thread, the main thread learns of it the next time
it runs bytecode; a main thread blocked in ``join()`` or ``Event.wait()`` never does, so the
drain and the server's shutdown never start. A thread started with :func:`start_quietly`
inherits a signal mask without the control signals, so the kernel delivers those to a thread
that takes them: the main thread, or one of the app's own.

A child process inherits the mask of the thread that starts it, and a child with SIGTERM
blocked cannot be stopped by it; the app's own code that ragtrail calls on its threads (alert
callbacks, sync health checks) runs inside :func:`control_signals_unblocked`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

__all__ = ["CONTROL_SIGNALS", "control_signals_blocked", "control_signals_unblocked",
           "start_quietly"]

CONTROL_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
                 "SIGCHLD", "SIGWINCH")
    if hasattr(signal, name)
)


@contextmanager
def _control_signals(blocked: bool) -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no POSIX signal masks
        yield
        return
    how = signal.SIG_BLOCK if blocked else signal.SIG_UNBLOCK
    previous = signal.pthread_sigmask(how, CONTROL_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def control_signals_blocked() -> AbstractContextManager[None]:
    """Threads started inside (by ragtrail or by a library it calls) never take the control
    signals; the calling thread's mask is restored on exit."""
    return _control_signals(blocked=True)


def control_signals_unblocked() -> AbstractContextManager[None]:
    """The calling thread takes the control signals again until the block ends (for the
    app's code, which may start child processes)."""
    return _control_signals(blocked=False)


def start_quietly(thread: threading.Thread) -> None:
    """``thread.start()``, the new thread's mask without the control signals."""
    with control_signals_blocked():
        thread.start()
