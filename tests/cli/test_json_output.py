"""``--json`` of ``events``, ``spans`` and ``metrics``: one array, newest first, printed as it
is read back, in flat memory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_helpers import Reader, peak_rss_kib, run_process, write_store

from ragtrail._records import SecurityEvent, Severity
from ragtrail.cli._serialize import record_dict
from ragtrail.store import AuditStore

_ROWS = 200_000


@pytest.mark.parametrize("command", ["events", "spans", "metrics"])
def test_json_is_exactly_the_indented_document_newest_first(command: str,
                                                            reader: Reader) -> None:
    """The streamed array is byte for byte what ``json.dumps(indent=2)`` makes of the store's
    records, newest first; none is an empty array, as before."""
    store = AuditStore(reader.url, read_only=True)
    try:
        records = getattr(store, command)(limit=None)
    finally:
        store.close()
    for flags, expected in ((), records), (("--limit", "1"), records[:1]):
        result = reader.run(command, "--db", reader.url, "--json", *flags)
        assert result.status == 0
        assert result.out == json.dumps([record_dict(r) for r in expected], indent=2) + "\n"
    nothing = reader.run("events", "--db", reader.url, "--json", "--type", "nothing")
    assert nothing.out == "[]\n"


def test_json_of_thousands_of_records_is_the_whole_list_newest_first(store_url: str) -> None:
    """Records beyond one read batch and beyond the in-memory spool (2,500 events, about
    1.5 MB) come out as the one document, newest first, none lost or repeated."""
    write_store(store_url, *(
        SecurityEvent("bulk", Severity.MEDIUM, "gateway", f"{n:04d}" + "y" * 400,
                      1_714_564_800_000_000 + n) for n in range(2_500)))
    store = AuditStore(store_url, read_only=True)
    try:
        records = store.events(limit=None)
    finally:
        store.close()
    result = run_process("events", "--db", store_url, "--json", "--limit", "5000")
    assert result.status == 0
    assert [event["id"] for event in json.loads(result.out)] == list(range(2_500, 0, -1))
    assert result.out == json.dumps([record_dict(r) for r in records], indent=2) + "\n"


@pytest.fixture(scope="module")
def large_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """200,000 events of about 300 bytes in a SQLite store (only read)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('large') / 'large.db'}"
    store = AuditStore(url, queue_size=_ROWS, events_capacity=_ROWS, event_coalesce_seconds=0)
    for n in range(_ROWS):
        store.record(SecurityEvent("flood", Severity.LOW, "gateway", f"{n:06d}" + "x" * 200,
                                   1_714_564_800_000_000 + n, metadata={"n": n}))
    assert store.flush(timeout=300)
    store.close()
    return url


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_json_of_200000_events_takes_no_more_memory_than_one(large_url: str,
                                                             tmp_path: Path) -> None:
    """``events --json --limit 200000`` streams: its peak memory is that of ``--limit 1``
    (the whole list, its dictionaries and the one document were built in memory)."""
    one = peak_rss_kib("events", "--db", large_url, "--json", "--limit", "1")
    every = peak_rss_kib("events", "--db", large_url, "--json", "--limit", str(_ROWS))
    assert every - one < 20 * 1024, (one, every)
