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

Under gevent's monkey-patching (gunicorn ``-k gevent``) a ``threading.Thread`` is a greenlet on
the hub's OS thread, and its ``start()`` switches to other greenlets: a mask blocked around it
was still blocked while other greenlets ran, and two starts that overlapped left the worker
with SIGTERM blocked for good (gunicorn then had to SIGKILL it, its queued spans unwritten).
Greenlets have no mask of their own, so nothing is masked for them. :class:`OSThread` is a real
OS thread there, for what must not share the hub's thread (an asyncio loop, a timer that fires
from a signal handler).
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

__all__ = ["CONTROL_SIGNALS", "OSThread", "control_signals_blocked", "control_signals_unblocked",
           "gevent_threads", "os_thread_ident", "start_quietly", "start_timer"]

CONTROL_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
                 "SIGCHLD", "SIGWINCH")
    if hasattr(signal, name)
)


def gevent_threads() -> bool:
    """gevent has monkey-patched ``threading``: new threads are greenlets (never imports it)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def _original_thread(name: str) -> Any:
    """``_thread.<name>`` as the interpreter has it, from under gevent's patch if there is one."""
    if gevent_threads():
        return sys.modules["gevent.monkey"].get_original("_thread", name)
    return getattr(_thread, name)


def _ensure_hub() -> None:
    """Give the calling thread its gevent hub now, if gevent patched ``threading``.

    An OS thread waits on gevent's locks and events through a hub of its own, which it builds
    from the modules the first hub loaded: built while another thread was still loading them,
    both threads waited on each other's import locks for good."""
    if gevent_threads():
        sys.modules["gevent"].get_hub()


def os_thread_ident() -> int:
    """The calling OS thread's ident, for ``signal.pthread_kill`` (gevent patches
    ``threading.get_ident`` and the main thread's ``ident`` to greenlet IDs)."""
    return int(_original_thread("get_ident")())


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
    signals; the calling thread's mask is restored on exit. Nothing is blocked under gevent,
    where those threads are greenlets and starting one switches to others."""
    if gevent_threads():
        return nullcontext()
    return _control_signals(blocked=True)


def control_signals_unblocked() -> AbstractContextManager[None]:
    """The calling thread takes the control signals again until the block ends (for the
    app's code, which may start child processes)."""
    return _control_signals(blocked=False)


class OSThread:
    """A daemon thread that is an OS thread even under gevent's monkey-patching.

    The part of ``threading.Thread`` that ragtrail uses. ``join()`` waits on a
    ``threading.Event``, which under gevent lets other greenlets run meanwhile.
    """

    def __init__(self, target: Callable[[], object], name: str) -> None:
        self.name = name
        self._target = target
        self._finished = threading.Event()
        self._started = False

    def start(self) -> None:
        _ensure_hub()
        _original_thread("start_new_thread")(self._run, ())
        self._started = True  # not if the start failed: never "alive" then

    def _run(self) -> None:
        _ensure_hub()  # before any lock or import can make this thread wait on gevent's
        try:
            self._target()
        finally:
            self._finished.set()

    def is_alive(self) -> bool:
        return self._started and not self._finished.is_set()

    def join(self, timeout: float | None = None) -> None:
        self._finished.wait(timeout)


def start_quietly(thread: threading.Thread | OSThread) -> None:
    """``thread.start()``, the new thread's mask without the control signals."""
    if isinstance(thread, OSThread):  # its start never switches greenlets: mask it under gevent
        with _control_signals(blocked=True):
            thread.start()
        return
    with control_signals_blocked():
        thread.start()


def start_timer(seconds: float, function: Callable[[], object], name: str) -> Callable[[], None]:
    """Call ``function`` on a thread of its own after ``seconds``; returns the cancel function.

    An OS thread under gevent, where a greenlet's ``start()`` switches and so cannot be called
    from a signal handler (it hung the process)."""
    cancelled = threading.Event()

    def run() -> None:
        if not cancelled.wait(seconds):
            function()

    start_quietly(OSThread(run, name) if gevent_threads()
                  else threading.Thread(target=run, name=name, daemon=True))
    return cancelled.set
