"""Hostile event types, sources, descriptions and metadata through ``ragtrail.security_event``:
never an exception but the documented ``ValueError``, and a stored event that is redacted,
escaped and within its size limits."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given

from ragtrail import SecurityEvent, Severity, get_monitor, security_event, start_span
from ragtrail.instrument._events import (
    MAX_DESCRIPTION_CHARS,
    MAX_METADATA_BYTES,
    MAX_SOURCE_CHARS,
    event_type_name,
)

from ._campaign import (
    CASES,
    CASES_PER_SURFACE,
    GENERATED,
    SECRET_FRAGMENTS,
    Campaign,
    Recipe,
    raw_controls,
)
from ._values import hostile_value

_TYPES = ("authn_login_fail", "authz_fail", "input_validation_fail", "malicious_file_upload",
          "AuthN Login-Fail", "custom.type:v2", "  spaced  ", "x" * 500)
_SEVERITIES: tuple[Severity | str, ...] = ("low", "MEDIUM", "High", " critical ", Severity.HIGH)
_ESCAPE_SLACK = 40  # clean_text allows escapes to lengthen a capped text this much


def _record(piece: str, recipe: Recipe) -> None:
    event_type = recipe.pick(_TYPES) if recipe.below(2) else recipe.text(piece)
    severity = recipe.pick(_SEVERITIES)
    source = recipe.long_text(piece, 50)
    description = recipe.long_text(piece[::-1], 400)
    metadata: Any = hostile_value(piece, recipe) if recipe.below(4) else None
    try:
        expected_type = event_type_name(event_type, get_monitor().redactor)
    except ValueError:
        expected_type = None
    refused: ValueError | None = None
    try:
        event = security_event(event_type, severity, source, description, metadata)
    except ValueError as error:  # documented: an event type without identifier characters
        refused = error
    if refused is not None:
        assert expected_type is None, refused
        return
    assert isinstance(event, SecurityEvent)
    assert event.event_type == expected_type
    _check(event)


def _check(event: SecurityEvent) -> None:
    """What the caller gets back is what is stored: escaped, bounded, redacted."""
    for text in (event.event_type, event.source, event.description):
        assert not raw_controls(text), text
    assert len(event.source) <= MAX_SOURCE_CHARS + _ESCAPE_SLACK + 20
    assert len(event.description) <= MAX_DESCRIPTION_CHARS + _ESCAPE_SLACK + 20
    encoded = json.dumps(event.metadata)
    assert len(encoded.encode()) <= MAX_METADATA_BYTES
    shown = repr(event)
    assert [s for s in ("Canary-Hunter2!", "AKIACANARY0123456789", "c4n4ryB34r3rT0k3nXYZ123")
            if s in shown] == [], shown


def test_generated_security_events(campaign: Callable[..., Campaign]) -> None:
    """10,000 generated events inside spans (so they also become span events for OTLP)."""
    surface = campaign("events")
    with surface.generated():

        @GENERATED
        @given(CASES)
        def batch(cases: list[tuple[str, Recipe]]) -> None:
            span = start_span("ingest", "chain")
            try:
                for piece, recipe in cases:
                    _record(piece, recipe)
                    surface.cases += 1
            finally:
                span.end()

        batch()
    assert surface.cases >= CASES_PER_SURFACE


def test_curated_security_events(campaign: Callable[..., Campaign]) -> None:
    """Every canary as source, description, metadata key and value; log-forging text."""
    surface = campaign("events")
    forged = "ok\r\n2026-11-27 03:00:00 CRITICAL forged entry\x1b[2J\x00"
    with surface.curated():
        for fragment in (*SECRET_FRAGMENTS, forged, "\u202e\u2028\x85", "é" * 5000):
            span = start_span("ingest", "chain")
            try:
                event = security_event("input_validation_fail", "high", fragment, fragment,
                                       {fragment: fragment, "password": fragment,
                                        "nested": [{"token": fragment, "note": fragment}]})
                assert event is not None
                _check(event)
            finally:
                span.end()
        with pytest.raises(ValueError, match="event_type"):
            security_event("!!!", "high", "src", "no identifier characters")
        with pytest.raises(ValueError, match="severity"):
            security_event("authz_fail", "apocalyptic", "src", "unknown severity")


@pytest.mark.parametrize("field", ["source", "description"])
def test_event_with_lone_surrogate_is_kept(campaign: Callable[..., Campaign],
                                           field: str) -> None:
    """An event whose text holds a lone surrogate (a filename from os.fsdecode of invalid
    UTF-8, a JSON "\\ud800" escape) is stored, not dropped: evidence must not vanish."""
    surface = campaign("defect-surrogate-event")
    texts = {"source": "10.0.0.7", "description": "rejected upload"}
    texts[field] += " \udcff"
    with surface.generated():
        security_event("malicious_file_upload", "high", texts["source"], texts["description"])
