"""build_security_event: validation, redaction, caps and log-injection escaping."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import pytest
from redaction_canaries import CANARIES, leaked

from ragtrail._records import Severity
from ragtrail._settings import Settings
from ragtrail.instrument._correlation import correlation_scope
from ragtrail.instrument._events import (
    MAX_DESCRIPTION_CHARS,
    MAX_METADATA_BYTES,
    MAX_SOURCE_CHARS,
    build_security_event,
)
from ragtrail.instrument._redaction import REDACTED, Redactor

SETTINGS = Settings(service_name="rag-api")
REDACTOR = Redactor(SETTINGS)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def build(event_type: str = "authz_fail", severity: Any = "high", source: str = "10.0.0.7",
          description: str = "denied", metadata: Any = None, **ids: Any) -> Any:
    return build_security_event(SETTINGS, REDACTOR, event_type, severity, source, description,
                                metadata, **ids)


@pytest.mark.parametrize(("given", "expected"), [
    ("low", Severity.LOW), ("MEDIUM", Severity.MEDIUM), (" High ", Severity.HIGH),
    ("Critical", Severity.CRITICAL), (Severity.HIGH, Severity.HIGH),
])
def test_severity_accepts_names_in_any_case_and_the_enum(given: Any,
                                                         expected: Severity) -> None:
    """The four names (any case) or the enum, as issue 3 asks."""
    assert build(severity=given).severity is expected


@pytest.mark.parametrize("bad", ["warning", "", "hi", 15, 40, True, None, 3.0])
def test_unknown_severity_raises_naming_the_choices(bad: Any) -> None:
    """Anything else is a ValueError that lists what is accepted."""
    with pytest.raises(ValueError, match="low, medium, high, critical"):
        build(severity=bad)


@pytest.mark.parametrize(("given", "expected"), [
    ("authn_login_fail", "authn_login_fail"),
    ("  AuthZ Fail ", "authz_fail"),
    ("malicious_path_traversal:/etc/passwd", "malicious_path_traversal:_etc_passwd"),
    ("login\r\nFAKE", "login_fake"),
    ("x" * 200, "x" * 64),
    ("authn_login_fail:ana@example.org", "authn_login_fail:_redacted"),
])
def test_event_type_is_a_short_sanitised_identifier(given: str, expected: str) -> None:
    """Lowercase, [a-z0-9_.:-] only, at most 64 characters, no secrets."""
    assert build(event_type=given).event_type == expected


@pytest.mark.parametrize("bad", ["", "   ", "\r\n", "!!!"])
def test_event_type_without_identifier_characters_is_rejected(bad: str) -> None:
    """An event type that sanitises to nothing is a programming error."""
    with pytest.raises(ValueError, match="event_type must be a short identifier"):
        build(event_type=bad)


def test_description_cannot_forge_log_lines() -> None:
    """CR, LF, NUL, ESC and Unicode line separators are shown as escapes."""
    event = build(description="bad login\r\n2026-01-01 INFO admin logged in\x00\x1b[2J\u2028")
    assert event.description == (
        "bad login\\r\\n2026-01-01 INFO admin logged in\\x00\\x1b[2J\\u2028")
    assert "\n" not in event.description
    assert "\r" not in event.description


def test_source_is_escaped_capped_and_defaulted() -> None:
    """Source is one line, at most MAX_SOURCE_CHARS (plus marker), never empty."""
    event = build(source="evil\nsource" + "s" * 1000)
    assert event.source.startswith("evil\\nsource")
    assert len(event.source) <= MAX_SOURCE_CHARS + 40
    assert build(source="").source == "unknown"


def test_description_is_capped_with_marker() -> None:
    """A huge description is cut to the cap and says so."""
    event = build(description="d" * 100_000)
    assert event.description.startswith("d" * 100)
    assert len(event.description) <= MAX_DESCRIPTION_CHARS + 40
    assert "truncated" in event.description
    escaped = build(description="\n" * 10_000).description
    assert len(escaped) <= MAX_DESCRIPTION_CHARS + 40


def test_metadata_is_redacted_escaped_and_bounded() -> None:
    """Metadata keys and values are redacted, escaped, and their JSON stays under the cap."""
    metadata = {"user": "ana", "api_key": "sk-live-1", "note": "line1\nline2",
                "bad\rkey": 1, "docs": ["x" * 1000] * 20}
    event = build(metadata=metadata)
    assert event.metadata["user"] == "ana"
    assert event.metadata["api_key"] == REDACTED
    assert event.metadata["note"] == "line1\\nline2"
    assert event.metadata["bad\\rkey"] == 1
    assert len(json.dumps(event.metadata).encode()) <= MAX_METADATA_BYTES


def test_metadata_that_is_not_a_mapping_is_wrapped() -> None:
    """A list or scalar given as metadata is kept under "value"."""
    assert build(metadata=[1, 2]).metadata == {"value": [1, 2]}
    assert build(metadata=None).metadata == {}


@pytest.mark.parametrize("field", ["description", "source", "metadata_value", "metadata_key"])
def test_canaries_never_survive_in_any_field(field: str) -> None:
    """No fake secret of any kind reaches the event, whichever field carried it."""
    for canary in CANARIES:
        text = canary.text
        kwargs: dict[str, Any] = {
            "description": {"description": f"failure: {text}"},
            "source": {"source": text},
            "metadata_value": {"metadata": {"detail": text, "nested": [{"x": text}]}},
            "metadata_key": {"metadata": {text: 1}},
        }[field]
        event = build(**kwargs)
        shown = json.dumps([event.description, event.source, event.metadata])
        assert leaked(shown) == [], canary.kind


def test_service_host_pid_and_time_are_filled() -> None:
    """The event says which service, host and process saw it, and when."""
    before = time.time_ns() // 1000
    event = build()
    after = time.time_ns() // 1000
    assert (event.service, event.host, event.pid) == ("rag-api", socket.gethostname(),
                                                      os.getpid())
    assert before <= event.time_us <= after
    assert (event.count, event.id) == (1, None)


def test_correlation_id_defaults_to_the_current_scope() -> None:
    """Without an explicit ID the event takes the current correlation ID."""
    with correlation_scope("c0ffee00c0ffee00c0ffee00c0ffee00"):
        assert build().correlation_id == "c0ffee00c0ffee00c0ffee00c0ffee00"
        assert build(correlation_id="explicit").correlation_id == "explicit"
    assert build().correlation_id is None


def test_trace_and_span_ids_are_kept_only_when_well_formed() -> None:
    """W3C-shaped IDs are kept; anything else is dropped rather than stored."""
    event = build(trace_id=TRACE_ID, span_id=SPAN_ID)
    assert (event.trace_id, event.span_id) == (TRACE_ID, SPAN_ID)
    event = build(trace_id="not-a-trace\n", span_id="1234")
    assert (event.trace_id, event.span_id) == (None, None)


def test_correlation_id_is_escaped_and_capped() -> None:
    """A hostile correlation ID cannot inject lines or grow without bound."""
    event = build(correlation_id="id\r\n" + "x" * 1000)
    assert event.correlation_id is not None
    assert event.correlation_id.startswith("id\\r\\n")
    assert len(event.correlation_id) <= 200
