"""Spans go into SQLite many rows to a statement (multi-row ``INSERT ... VALUES`` in
power-of-two sizes): what is read back is exactly what was recorded, and a record SQLite
refuses still fails alone. Real SQLite files and connections."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import event
from store_helpers import make_span

from ragtrail._records import SpanEvent, SpanRecord
from ragtrail.store import AuditStore
from ragtrail.store._rows import RowBuilder
from ragtrail.store._schema import SPANS
from ragtrail.store._write import _SqliteInsert

TRICKY_TEXT = [
    "plain", "", "123", "-7", "1e400", "null", "true", "[1, 2]", '{"a": 1}', 'quote " in',
    "back\\slash", "line\nbreak", "tab\tend", "caf\u00e9 \u4e2d\u6587 \U0001f600",
    "\u2028\u2029", "x" * 100,
]


def _spans(texts: list[str]) -> list[SpanRecord]:
    return [make_span(name=text, kind="llm", correlation_id=text or None,
                      error_type=text, error_message=text or None, status="error",
                      start_us=2**62 + i, duration_us=i,
                      attributes={"text": text, "n": i, "f": 0.5, "list": [text, None]},
                      events=(SpanEvent("e", 1, {"t": text}),))
            for i, text in enumerate(texts)]


def _stored(store: AuditStore, spans: list[SpanRecord]) -> dict[str, SpanRecord]:
    """Record ``spans``, flush, and read every stored span back, by span ID."""
    for span in spans:
        store.record(span)
    assert store.flush(20)
    return {span.span_id: span for span in store.spans(limit=None)}


def _statements(store: AuditStore) -> list[str]:
    """The SQL the store's connections run from now on (SQLite's own trace callback)."""
    seen: list[str] = []
    event.listen(store.engine, "connect",
                 lambda dbapi_connection, _record: dbapi_connection.set_trace_callback(
                     seen.append))
    store.engine.dispose()  # the writer is idle: its next batch opens a traced connection
    return seen


def _span_inserts(statements: list[str]) -> list[str]:
    return [sql for sql in statements if sql.startswith("INSERT INTO ragtrail_spans")]


@pytest.mark.parametrize("texts", [TRICKY_TEXT, ["a", "nul\x00inside", "b"]],
                         ids=["tricky", "with-nul"])
def test_a_batch_reads_back_exactly_as_recorded(
        store_factory: Callable[..., AuditStore], tmp_path: Path, texts: list[str]) -> None:
    store = store_factory(f"sqlite:///{tmp_path / 'spans.db'}", batch_size=500)
    assert store.flush(10)
    statements = _statements(store)
    recorded = _spans(texts)
    stored = _stored(store, recorded)
    assert len(stored) == len(recorded)
    for span in recorded:
        back = stored[span.span_id]
        assert back == span, span.name[:40]
        assert type(back.name) is str  # "123" stays text, "null" is not NULL
    assert store.health().dropped == 0
    # 16 spans: one statement; 3: one of 2 rows and the last alone.
    assert len(_span_inserts(statements)) == (1 if len(texts) == 16 else 2)


def test_a_batch_goes_in_chunks_of_powers_of_two(store_factory: Callable[..., AuditStore],
                                                 tmp_path: Path) -> None:
    """39 spans, large and small: statements of 32, 4 and 2 rows, and the last row alone."""
    store = store_factory(f"sqlite:///{tmp_path / 'chunks.db'}", batch_size=500)
    assert store.flush(10)
    statements = _statements(store)
    texts = [f"marker-{i:03d}" + ("y" * 3_000 if i % 3 else "") for i in range(39)]
    recorded = _spans(texts)
    stored = _stored(store, recorded)
    assert all(stored[span.span_id] == span for span in recorded)
    # A span's text appears 7 times in its row (_spans puts it in 7 places).
    rows_per_insert = sorted(sql.count("marker-") // 7 for sql in _span_inserts(statements))
    assert rows_per_insert == [1, 2, 4, 32]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Connection.setlimit is Python 3.11+")
def test_chunks_respect_the_connection_s_limit_on_bound_values(tmp_path: Path) -> None:
    """SQLite before 3.32 binds at most 999 values per statement: 64 rows of 14 columns."""
    AuditStore(f"sqlite:///{tmp_path / 'schema.db'}").close()
    real = sqlite3.connect(tmp_path / "schema.db", isolation_level=None)
    real.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # type: ignore[attr-defined]
    sizes: list[int] = []
    real.set_trace_callback(lambda sql: sizes.append(sql.count("marker-") // 7))
    builder = RowBuilder(strict=False, limited_text=False)
    rows = [builder.span(span, i + 1)
            for i, span in enumerate(_spans([f"marker-{i:03d}" for i in range(200)]))]

    class Pooled:
        driver_connection = real

    class Conn:
        connection = Pooled()

    _SqliteInsert()(Conn(), SPANS, rows)  # type: ignore[arg-type]
    assert real.execute("SELECT count(*) FROM ragtrail_spans").fetchone() == (200,)
    assert sorted(size for size in sizes if size) == [8, 64, 64, 64]
    real.close()


def test_a_record_sqlite_cannot_bind_fails_alone(store_factory: Callable[..., AuditStore],
                                                tmp_path: Path) -> None:
    """A value SQLite cannot bind (an integer over 64 bits) fails its statement; the
    one-by-one retry stores the rest and counts the one."""
    store = store_factory(f"sqlite:///{tmp_path / 'refused.db'}", batch_size=500)
    spans = _spans(["before", "too big", "after"])
    spans[1] = dataclasses.replace(spans[1], start_us=2**70)
    for span in spans:
        store.record(span)
    assert store.flush(10)
    names = sorted(span.name for span in store.spans(limit=None))
    assert names == ["after", "before"]
    assert store.health().dropped == 1


def test_a_large_record_sqlite_refuses_fails_alone(store_factory: Callable[..., AuditStore],
                                                   tmp_path: Path) -> None:
    """Large spans too: the one-by-one retry stores the other 19 of their statement."""
    store = store_factory(f"sqlite:///{tmp_path / 'large-bad.db'}", batch_size=500)
    texts = [f"{i:03d}" + "y" * 3_000 for i in range(20)]
    spans = _spans(texts)
    spans[7] = dataclasses.replace(spans[7], start_us=2**70)  # SQLite binds 64 bits at most
    stored = _stored(store, spans)
    assert sorted(span.name for span in stored.values()) == sorted(
        text for i, text in enumerate(texts) if i != 7)
    assert store.health().dropped == 1

@pytest.mark.postgres
def test_postgresql_takes_the_same_batch(postgres_db_url: str,
                                         store_factory: Callable[..., AuditStore]) -> None:
    """The other backend, for comparison: the same spans read back the same."""
    store = store_factory(postgres_db_url)
    recorded = _spans(TRICKY_TEXT)
    stored = _stored(store, recorded)
    assert all(stored[span.span_id] == span for span in recorded)


def test_none_is_stored_as_null_and_an_app_s_none_adapter_is_kept(
        store_factory: Callable[..., AuditStore], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The writer registers a C-level adapter for None (binding it skips sqlite3's adapter
    # protocol lookup); values must still go in as SQL NULL, and an app's adapter must win.
    key = (type(None), sqlite3.PrepareProtocol)
    monkeypatch.delitem(sqlite3.adapters, key, raising=False)
    store = store_factory(url=f"sqlite:///{tmp_path / 'nulls.db'}")
    assert sqlite3.adapters[key](None) is None
    spans = [make_span(parent_span_id=None, error_type=None, correlation_id=None)
             for _ in range(3)]
    _stored(store, spans)
    with contextlib.closing(sqlite3.connect(tmp_path / "nulls.db")) as conn:
        types = conn.execute(
            "SELECT DISTINCT typeof(parent_span_id), typeof(error_type), "
            "typeof(error_message), typeof(correlation_id) FROM ragtrail_spans").fetchall()
    assert types == [("null", "null", "null", "null")]

    def app_adapter(value: None) -> None:
        return None

    monkeypatch.setitem(sqlite3.adapters, key, app_adapter)
    store_factory(url=f"sqlite:///{tmp_path / 'other.db'}")
    assert sqlite3.adapters[key] is app_adapter
