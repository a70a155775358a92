"""``CorrelationFilter`` and ``JsonFormatter`` on real log records."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from ragtrail.instrument import (
    CorrelationFilter,
    JsonFormatter,
    Monitor,
    correlation_scope,
    start_span,
)

CORRELATION = "c0ffeec0ffeec0ffeec0ffeec0ffeec0"


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON lines into a buffer through the filter and the formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"ragtrail-tests.{id(stream)}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_filter_adds_ids_for_plain_formatters(monitor: Monitor) -> None:
    """``%(correlation_id)s``, ``%(trace_id)s``, ``%(span_id)s`` work; "-" outside scopes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(logging.Formatter("%(correlation_id)s %(trace_id)s %(span_id)s"))
    logger = logging.getLogger("ragtrail-tests.plain")
    logger.addHandler(handler)
    try:
        logger.warning("outside")
        with correlation_scope(CORRELATION):
            span = start_span("request", "server")
            logger.warning("inside")
            span.end()
    finally:
        logger.removeHandler(handler)
    outside, inside = stream.getvalue().splitlines()
    assert outside == "- - -"
    assert inside == f"{CORRELATION} {span.trace_id_hex} {span.span_id_hex}"


def test_json_lines_carry_ids_and_fields(monitor: Monitor,
                                         log: tuple[logging.Logger, io.StringIO]) -> None:
    """One JSON object per record with time, level, logger, message, IDs and extras."""
    logger, stream = log
    with correlation_scope(CORRELATION):
        span = start_span("request", "server")
        logger.info("retrieved %d documents", 5, extra={"index": "faq"})
        span.end()
    (entry,) = lines(stream)
    assert entry["message"] == "retrieved 5 documents"
    assert (entry["level"], entry["logger"]) == ("INFO", logger.name)
    assert (entry["correlation_id"], entry["trace_id"], entry["span_id"]) == (
        CORRELATION, span.trace_id_hex, span.span_id_hex)
    assert entry["extra"] == {"index": "faq"}
    assert str(entry["time"]).endswith("Z")


def test_newlines_cannot_forge_a_log_line(monitor: Monitor,
                                          log: tuple[logging.Logger, io.StringIO]) -> None:
    """A message with CR/LF stays one line; the forged entry is just text inside it."""
    logger, stream = log
    logger.info("user said: hi\r\n{\"level\": \"CRITICAL\", \"message\": \"forged\"}")
    assert len(stream.getvalue().splitlines()) == 1
    (entry,) = lines(stream)
    assert entry["level"] == "INFO"
    assert "forged" in str(entry["message"])


def test_secrets_in_messages_extras_and_tracebacks_are_redacted(
        monitor: Monitor, log: tuple[logging.Logger, io.StringIO]) -> None:
    """Canary secrets appear nowhere in the output."""
    logger, stream = log
    secret = "sk-canary0123456789abcdefghijklmnop"
    try:
        raise RuntimeError(f"auth failed with {secret}")
    except RuntimeError:
        logger.exception("calling model with api_key=%s", secret,
                         extra={"password": "hunter2-canary"})
    output = stream.getvalue()
    assert secret not in output
    assert "hunter2-canary" not in output
    (entry,) = lines(stream)
    assert "[REDACTED]" in str(entry["message"])
    assert "RuntimeError" in str(entry["exception"])
    assert entry["extra"] == {"password": "[REDACTED]"}


def test_formatter_works_without_a_monitor(log: tuple[logging.Logger, io.StringIO]) -> None:
    """Formatting never starts a monitor; the default redactor is used."""
    from ragtrail.instrument import _monitor

    logger, stream = log
    logger.info("password=hunter2-canary")
    assert "hunter2-canary" not in stream.getvalue()
    assert _monitor._active is None
