"""``AuditStore.stream()`` checks its arguments when it is called, as ``events()`` does,
not at the first ``next()`` far from the call (or never, for a stream built and not read).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ragtrail.store import AuditStore


def test_stream_refuses_an_unknown_ring_when_called(
        tmp_path: Path, store_factory: Callable[..., AuditStore]) -> None:
    """``stream("event")`` (a typo) raises ValueError at the call, as ``events(limit=-1)``
    does."""
    store = store_factory(f"sqlite:///{tmp_path / 'audit.db'}")
    with pytest.raises(ValueError, match="ring must be one of"):
        store.stream("event")
