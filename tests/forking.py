"""Part of a test run in a child forked from the test's process, as gunicorn forks its workers
after ``--preload``: what the child reports comes back as text over a pipe."""

from __future__ import annotations

import os
import traceback
import warnings
from collections.abc import Callable

__all__ = ["output_of_forked_child"]


def output_of_forked_child(child: Callable[[], str]) -> str:
    """Fork now; the child runs ``child()`` and leaves without cleanup (never back into
    pytest). The text it returned; an AssertionError if it raised (its traceback on stderr)."""
    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12+: fork() in a process with threads (the store's)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe and its exit code
        code = 1
        try:
            os.close(read)
            os.write(write, child().encode())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked child raised (see stderr)"
    return output
