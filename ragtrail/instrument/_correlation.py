"""The correlation ID of the current request or job, in one ContextVar.

A ContextVar (not a thread-local) so the ID follows asyncio tasks by itself and stays apart
between concurrent requests on one event loop. Setting returns a token that restores the
previous value, so nested scopes unwind correctly.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

__all__ = [
    "correlation_id",
    "correlation_scope",
    "new_correlation_id",
    "reset_correlation_id",
    "set_correlation_id",
    "unpredictable_bits",
]

_correlation_id: ContextVar[str | None] = ContextVar("ragtrail_correlation_id", default=None)

# RFC 9562 section 5.4: a version 4 UUID is 122 random bits with version 4 and variant 10.
# Setting those bits on 16 random bytes gives what uuid.uuid4().hex does, at a third of its
# cost (no UUID object).
_UUID4_KEEP = ~(0xF << 76) & ~(0xC << 60)
_UUID4_SET = (0x4 << 76) | (0x8 << 60)

# Random bytes for 256 IDs per ``os.urandom`` call (the middleware draws one per request
# without an inbound ID, for the new trace's ID). One system call per request cost 3-7 us
# inside a request loop on the project's KVM machine (0.5 us in a tight loop) and released
# the GIL to any thread waiting for it (the store's writer). The pool is
# a C iterator, so taking the next 16 bytes is atomic under the GIL; two threads refilling it
# at once only waste bytes. A forked child starts a pool of its own.
_IDS_PER_POOL = 256
_pool: Iterator[tuple[bytes]] = iter(())


def _forget_pool() -> None:
    global _pool
    _pool = iter(())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def correlation_id() -> str | None:
    """The current correlation ID, or None outside any scope."""
    return _correlation_id.get()


def new_correlation_id() -> str:
    """A fresh ID: a uuid4 as 32 lowercase hex characters (``uuid.uuid4().hex``)."""
    bits = (unpredictable_bits() & _UUID4_KEEP) | _UUID4_SET
    return bits.to_bytes(16, "big").hex()


def unpredictable_bits() -> int:
    """128 bits from the operating system's random source (pooled), for IDs a client sees:
    ``random.getrandbits`` is fast but its future output can be derived from its past."""
    global _pool
    try:
        (raw,) = next(_pool)
    except StopIteration:
        _pool = struct.iter_unpack("16s", os.urandom(16 * _IDS_PER_POOL))
        (raw,) = next(_pool)
    return int.from_bytes(raw, "big")


def set_correlation_id(value: str | None) -> Token[str | None]:
    """Make ``value`` current; pass the returned token to ``reset_correlation_id``."""
    return _correlation_id.set(value)


def reset_correlation_id(token: Token[str | None]) -> None:
    """Restore the ID that was current before the matching ``set_correlation_id``."""
    _correlation_id.reset(token)


@contextmanager
def correlation_scope(id: str | None = None) -> Iterator[str]:
    """Run a block under ``id`` (or a new ID), restoring the previous one on exit.

    >>> with correlation_scope("4bf92f3577b34da6a3ce929d0e0e4736") as cid:
    ...     assert correlation_id() == cid
    """
    value = id if id is not None else new_correlation_id()
    token = _correlation_id.set(value)
    try:
        yield value
    finally:
        _correlation_id.reset(token)
