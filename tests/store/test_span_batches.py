"""Spans go into SQLite as one JSON array per batch (``json_each``), large ones 16 to a
statement: what is read back is exactly what was recorded, and what JSON cannot carry still
fails alone, as a bound value would. Real SQLite files; the one stand-in is a SQLite without
JSON functions."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _one_statement_per_batch(statements: list[str]) -> bool:
    return any("json_each" in sql and "INSERT INTO ragtrail_spans" in sql
               for sql in statements)


@pytest.mark.parametrize(("texts", "one_statement"), [
    (TRICKY_TEXT, True),
    (["a", "nul\x00inside", "b"], False),  # SQLite's JSON functions would cut at the NUL
], ids=["tricky", "with-nul"])
def test_a_batch_reads_back_exactly_as_recorded(
        store_factory: Callable[..., AuditStore], tmp_path: Path, texts: list[str],
        one_statement: bool) -> None:
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
    assert _one_statement_per_batch(statements) == one_statement


def test_large_spans_go_16_to_a_statement_beside_the_small_ones_batch(
        store_factory: Callable[..., AuditStore], tmp_path: Path) -> None:
    """Spans with kilobytes of captured values: SQLite parses a JSON row once per column, so
    they go 16 to a multi-row INSERT (the rest of them row by row), while the batch's small
    spans still go in together; everything reads back exactly."""
    store = store_factory(f"sqlite:///{tmp_path / 'large.db'}", batch_size=500)
    assert store.flush(10)
    statements = _statements(store)
    large = [f"{i:03d}" + "y" * 3_000 for i in range(35)]  # 2 statements of 16, then 3 alone
    recorded = _spans([*large[:20], "small 1", "small 2", *large[20:], "small 3"])
    stored = _stored(store, recorded)
    assert len(stored) == len(recorded)
    assert all(stored[span.span_id] == span for span in recorded)
    assert _one_statement_per_batch(statements)
    inserts = [sql for sql in statements
               if sql.startswith("INSERT INTO ragtrail_spans") and "json_each" not in sql]
    rows_per_insert = sorted(sql.count("y" * 3_000) for sql in inserts)
    # A span's text appears 7 times in its row (_spans puts it in 7 places).
    assert rows_per_insert == [7, 7, 7, 16 * 7, 16 * 7]
    assert all("small" not in sql for sql in inserts)


def test_a_record_json_cannot_carry_fails_alone(store_factory: Callable[..., AuditStore],
                                                tmp_path: Path) -> None:
    """A lone surrogate (from bytes decoded with surrogateescape, say) fails its batch as it
    would bound as a value; the one-by-one retry stores the rest and counts the one."""
    path = tmp_path / "surrogate.db"
    store = store_factory(f"sqlite:///{path}", batch_size=500)
    spans = _spans(["before", "lone \udcff surrogate", "after"])
    for span in spans:
        store.record(span)
    assert store.flush(10)
    names = sorted(span.name for span in store.spans(limit=None))
    assert names == ["after", "before"]
    assert store.health().dropped == 1
    with sqlite3.connect(path) as conn:  # nothing in the file that is not valid UTF-8
        conn.execute("SELECT name, error_message FROM ragtrail_spans").fetchall()
    conn.close()



def test_a_large_record_sqlite_refuses_fails_alone(store_factory: Callable[..., AuditStore],
                                                   tmp_path: Path) -> None:
    """In a 16-row statement too: the one-by-one retry stores the other large spans."""
    store = store_factory(f"sqlite:///{tmp_path / 'large-bad.db'}", batch_size=500)
    texts = [f"{i:03d}" + "y" * 3_000 for i in range(20)]
    texts[7] = "lone \udcff surrogate " + "y" * 3_000
    stored = _stored(store, _spans(texts))
    assert sorted(span.name for span in stored.values()) == sorted(
        text for i, text in enumerate(texts) if i != 7)
    assert store.health().dropped == 1

class _NoJsonSqlite:
    """Stand-in for a SQLite built without JSON functions (not available here): every other
    statement goes to a real in-memory SQLite connection."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.json_calls = 0

    def execute(self, sql: str, *args: Any) -> Any:
        if "json_" in sql:
            self.json_calls += 1
            raise sqlite3.OperationalError("no such table: json_each")
        return self.real.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> Any:
        return self.real.executemany(sql, rows)


class _Conn:
    def __init__(self, driver: Any) -> None:
        self.connection = type("Pooled", (), {"driver_connection": driver})()


def test_without_json_functions_rows_go_one_by_one(tmp_path: Path) -> None:
    AuditStore(f"sqlite:///{tmp_path / 'schema.db'}").close()
    real = sqlite3.connect(tmp_path / "schema.db", isolation_level=None)
    driver = _NoJsonSqlite(real)
    insert = _SqliteInsert()
    builder = RowBuilder(strict=False, strip_nul=False)
    for batch in range(2):
        rows = [builder.span(span, batch * 10 + i + 1)
                for i, span in enumerate(_spans(["a", "b", "c"]))]
        insert(_Conn(driver), SPANS, rows)  # type: ignore[arg-type]
    assert real.execute("SELECT count(*) FROM ragtrail_spans").fetchone() == (6,)
    assert driver.json_calls == 1  # asked once, then never again
    real.close()


@pytest.mark.postgres
def test_postgresql_takes_the_same_batch(postgres_db_url: str,
                                         store_factory: Callable[..., AuditStore]) -> None:
    """The other backend, for comparison: the same spans read back the same."""
    store = store_factory(postgres_db_url)
    recorded = _spans(TRICKY_TEXT)
    stored = _stored(store, recorded)
    assert all(stored[span.span_id] == span for span in recorded)
