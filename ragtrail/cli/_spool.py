"""Pieces of output made oldest first, handed back newest first, without holding them all in
memory.

``AuditStore.stream()`` reads oldest first (the order it can page through in short
transactions), while ``--json`` of the list commands prints newest first, as the tables do.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["newest_first"]

T = TypeVar("T")

_BATCH = 1000  # records a piece
_IN_MEMORY = 1024 * 1024  # bytes kept in memory before the spool becomes a temporary file
_LENGTH = 8  # bytes of the length written after each piece


def newest_first(records: Iterable[T], render: Callable[[list[T]], str]) -> Iterator[str]:
    """``render`` of each thousand ``records`` taken last first, the last thousand first;
    nothing is handed back before every record was read.

    Each piece is spooled with its length after it, so the spool reads back from its end. A
    spool beyond 1 MiB is an unnamed temporary file (mode 0600, gone when closed, in
    ``$TMPDIR``) as large as the output.
    """
    iterator = iter(records)
    with tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY) as spool:
        while batch := list(itertools.islice(iterator, _BATCH)):
            batch.reverse()
            data = render(batch).encode()
            spool.write(data)
            spool.write(len(data).to_bytes(_LENGTH, "little"))
        end = spool.tell()
        while end:
            spool.seek(end - _LENGTH)
            size = int.from_bytes(spool.read(_LENGTH), "little")
            end -= _LENGTH + size
            spool.seek(end)
            yield spool.read(size).decode()
