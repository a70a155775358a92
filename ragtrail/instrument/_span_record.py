"""``SpanRecord``s built at a sixth of the dataclass constructor's cost, for ``LiveSpan.end()``.

Every finished span becomes one record on the caller's thread, so the constructor's cost is
paid on every ``@monitored`` call and every request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ragtrail._records import SpanEvent, SpanRecord, SpanStatus

__all__ = ["span_record"]

_RECORD_FIELDS = ("trace_id", "span_id", "name", "kind", "start_us", "duration_us",
                  "parent_span_id", "status", "error_type", "error_message", "correlation_id",
                  "attributes", "events")


class _RecordUnderConstruction:
    """``SpanRecord``'s slots in ``SpanRecord``'s order, without the freezing ``__setattr__``:
    the layout Python lets an instance trade for ``SpanRecord`` by assigning ``__class__``."""

    __slots__ = _RECORD_FIELDS


def _record_builder() -> Callable[..., SpanRecord]:
    """``SpanRecord``'s constructor, or an equivalent at a sixth of its cost.

    A frozen dataclass sets each field through ``object.__setattr__``, which here costs more
    than the rest of ``end()``. The fields are set instead on an unfrozen object with the same
    slots, which then becomes a ``SpanRecord`` (``__class__`` assignment, allowed between
    classes of the same layout): the record is the same (equal, frozen, of type
    ``SpanRecord``). If ``SpanRecord`` ever changes shape (other fields, no slots, a
    ``__post_init__``), the real constructor is used.
    """
    if (tuple(f.name for f in dataclasses.fields(SpanRecord)) != _RECORD_FIELDS
            or getattr(SpanRecord, "__slots__", None) != _RECORD_FIELDS
            or "__post_init__" in SpanRecord.__dict__):
        return SpanRecord
    new = object.__new__

    def build(a: str, b: str, c: str, d: str, e: int, f: int, g: str | None, h: SpanStatus,
              i: str | None, j: str | None, k: str | None, m: dict[str, Any],
              n: tuple[SpanEvent, ...]) -> SpanRecord:
        record: Any = new(_RecordUnderConstruction)
        record.trace_id = a
        record.span_id = b
        record.name = c
        record.kind = d
        record.start_us = e
        record.duration_us = f
        record.parent_span_id = g
        record.status = h
        record.error_type = i
        record.error_message = j
        record.correlation_id = k
        record.attributes = m
        record.events = n
        record.__class__ = SpanRecord
        built: SpanRecord = record  # (no cast(): a function call on this hot path)
        return built

    try:  # a layout Python would not trade raises TypeError here, once
        build("0" * 32, "0" * 16, "", "", 0, 0, None, "ok", None, None, None, {}, ())
    except TypeError:
        return SpanRecord
    return build



span_record = _record_builder()
"""``SpanRecord``'s constructor (positional arguments, in field order), or its cheaper twin."""
