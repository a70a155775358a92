"""A rejection that cannot get the quarantine's lock keeps its evidence where it was."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from security_corpus import ELF, Corpus

from ragtrail.instrument import Monitor
from ragtrail.security import FileValidator
from ragtrail.security import _quarantine_bound as bound


def test_a_rejection_that_cannot_get_the_lock_leaves_its_file_where_it_is(
        monitor: Monitor, corpus: Corpus, quarantine_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/security.md: "a rejection that cannot get [the lock] within 10 seconds leaves its
    file where it is". The file was moved to ``.incoming-*`` before the lock was asked for,
    and was deleted when the lock timed out (found in review): it is put back now."""
    monkeypatch.setattr(bound, "_LOCK_TIMEOUT", 0.3)
    quarantine_dir.mkdir(mode=0o700, exist_ok=True)
    holder = os.open(quarantine_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another worker, stuck on a hung disk
        path = corpus.write("invoice.pdf", ELF)
        result = FileValidator(monitor=monitor).validate(path)
    finally:
        os.close(holder)
    assert (result.accepted, result.quarantine_path) == (False, None)
    kept = [name for name in os.listdir(quarantine_dir) if not name.startswith(".")]
    assert path.read_bytes() == ELF
    assert kept == []
