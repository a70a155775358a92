"""A version-1 store as ragtrail's version-1 writer left it (schema version 1, before
``ragtrail_writers``): the DDL its metadata emitted and the rows it wrote for one coalesced
high event (4 occurrences), a low event, two spans and a metrics sample."""

from __future__ import annotations

from sqlalchemy import create_engine, text


def statements(backend: str) -> list[str]:
    """The version-1 store, for ``sqlite`` or ``postgresql`` (IDs: INTEGER or BIGINT)."""
    id_type = "INTEGER" if backend == "sqlite" else "BIGINT"
    return [
        f"CREATE TABLE ragtrail_events (id {id_type} NOT NULL, time_us BIGINT NOT NULL, "
        "event_type VARCHAR NOT NULL, severity SMALLINT NOT NULL, source VARCHAR NOT NULL, "
        "description TEXT NOT NULL, correlation_id VARCHAR, trace_id VARCHAR, "
        "span_id VARCHAR, metadata TEXT NOT NULL, service VARCHAR NOT NULL, "
        "host VARCHAR NOT NULL, pid INTEGER NOT NULL, count INTEGER NOT NULL, "
        "PRIMARY KEY (id))",
        "CREATE INDEX ix_ragtrail_events_correlation ON ragtrail_events (correlation_id)",
        "CREATE INDEX ix_ragtrail_events_high_id ON ragtrail_events (id, severity) "
        "WHERE severity >= 30",
        "CREATE INDEX ix_ragtrail_events_severity_id ON ragtrail_events (severity, id)",
        "CREATE INDEX ix_ragtrail_events_type_id ON ragtrail_events (event_type, id)",
        f"CREATE TABLE ragtrail_metrics (id {id_type} NOT NULL, time_us BIGINT NOT NULL, "
        "cpu_percent FLOAT NOT NULL, memory_percent FLOAT NOT NULL, "
        "disk_usage_percent FLOAT NOT NULL, net_sent_bytes_per_s FLOAT NOT NULL, "
        "net_recv_bytes_per_s FLOAT NOT NULL, active_connections INTEGER NOT NULL, "
        "queue_depth INTEGER NOT NULL, process_rss_bytes BIGINT NOT NULL, PRIMARY KEY (id))",
        "CREATE TABLE ragtrail_ring (ring VARCHAR NOT NULL, bucket SMALLINT NOT NULL, "
        "row_count BIGINT NOT NULL, capacity BIGINT NOT NULL, written BIGINT NOT NULL, "
        "dropped BIGINT NOT NULL, coalesced BIGINT NOT NULL, PRIMARY KEY (ring, bucket))",
        "CREATE TABLE ragtrail_schema (version INTEGER NOT NULL)",
        f"CREATE TABLE ragtrail_spans (id {id_type} NOT NULL, trace_id VARCHAR NOT NULL, "
        "span_id VARCHAR NOT NULL, parent_span_id VARCHAR, name VARCHAR NOT NULL, "
        "kind VARCHAR NOT NULL, start_us BIGINT NOT NULL, duration_us BIGINT NOT NULL, "
        "status VARCHAR NOT NULL, error_type VARCHAR, error_message TEXT, "
        "correlation_id VARCHAR, attributes TEXT NOT NULL, events TEXT NOT NULL, "
        "PRIMARY KEY (id))",
        "CREATE INDEX ix_ragtrail_spans_correlation ON ragtrail_spans (correlation_id)",
        "CREATE INDEX ix_ragtrail_spans_name_id ON ragtrail_spans (name, id)",
        "CREATE INDEX ix_ragtrail_spans_trace ON ragtrail_spans (trace_id)",
        "INSERT INTO ragtrail_schema VALUES (1)",
        "INSERT INTO ragtrail_ring VALUES ('events', 0, 2, 100000, 2, 0, 3), "
        "('spans', 0, 2, 100000, 2, 0, 0), ('metrics', 0, 1, 10000, 1, 0, 0), "
        "('events', 10, 1, 0, 0, 0, 0), ('events', 20, 0, 0, 0, 0, 0), "
        "('events', 30, 1, 0, 0, 0, 0), ('events', 40, 0, 0, 0, 0, 0)",
        "INSERT INTO ragtrail_events VALUES (1, 1700000000000000, 'authn_login_fail', 30, "
        "'login', 'bad password', 'c1', NULL, NULL, '{\"user\":\"u1\"}', 'svc', 'h', 7, 4), "
        "(2, 1700000000000010, 'rate_limited', 10, 'api', 'slow down', NULL, NULL, NULL, "
        "'{}', 'svc', 'h', 7, 1)",
        "INSERT INTO ragtrail_spans VALUES (1, '" + "a" * 32 + "', '" + "b" * 16 + "', NULL, "
        "'retrieve', 'internal', 1700000000000000, 1500, 'ok', NULL, NULL, 'c1', '{}', '[]'), "
        "(2, '" + "a" * 32 + "', '" + "c" * 16 + "', NULL, 'GET /ask', 'server', "
        "1700000000000000, 3000, 'ok', NULL, NULL, NULL, '{}', '[]')",
        "INSERT INTO ragtrail_metrics VALUES (1, 1700000000000000, 1.5, 2.5, 3.5, 4.5, 5.5, "
        "6, 7, 8)",
    ]


def create_version_1_store(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements(engine.dialect.name):
            conn.execute(text(statement))
    engine.dispose()
