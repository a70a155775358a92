"""Everything ``@monitored`` knows about one decorated callable, computed at decoration time.

The per-call wrappers only read this frozen plan; what each call costs is decided here once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from time import time_ns
from typing import Any

from ragtrail._records import Severity
from ragtrail.instrument._capture import ArgumentCapture
from ragtrail.instrument._exception_text import describe
from ragtrail.instrument._monitor import Monitor
from ragtrail.instrument._rag_attributes import Extractor
from ragtrail.instrument._spans import LiveSpan, open_span

__all__ = ["CallPlan"]

logger = logging.getLogger("ragtrail")

# OpenInference: the values are JSON text in OTLP. They stay structured (redacted, bounded)
# in the record: the store's writer and the exporter encode them off the caller's thread.
INPUT_VALUE = "input.value"
INPUT_MIME_TYPE = "input.mime_type"
OUTPUT_VALUE = "output.value"
OUTPUT_MIME_TYPE = "output.mime_type"
_JSON = "application/json"
_TEXT = "text/plain"
TIME_TO_FIRST_ITEM = "ragtrail.time_to_first_item_ms"
ITEMS = "ragtrail.items"
CLOSED_EARLY = "ragtrail.closed_early"
INTERRUPTED = "ragtrail.interrupted"


class CallPlan:
    """Name, kind, static attributes and the optional per-call work of one callable."""

    __slots__ = ("attributes", "capture", "capture_result", "extractor", "kind", "name",
                 "record_errors", "slow_ns")

    def __init__(
        self,
        *,
        name: str,
        kind: str,
        attributes: Mapping[str, Any],
        capture: ArgumentCapture | None,
        capture_result: bool,
        extractor: Extractor | None,
        slow_ms: float | None,
        record_errors: bool,
    ) -> None:
        self.name = name
        self.kind = kind
        self.attributes = dict(attributes)
        self.capture = capture
        self.capture_result = capture_result
        self.extractor = extractor
        self.slow_ns = None if slow_ms is None else int(slow_ms * 1_000_000)
        self.record_errors = record_errors

    # Every method below runs on the caller's thread and must never raise into the app.

    def begin(self, monitor: Monitor, instance: Any, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> LiveSpan:
        """Open this call's span, with captured arguments, and make it current."""
        span = open_span(monitor, self.name, self.kind, self.attributes)
        if self.capture is not None:
            captured = self.captured_arguments(monitor, instance, args, kwargs)
            if captured:
                span._update(captured)
        span.attach()
        return span

    def captured_arguments(self, monitor: Monitor, instance: Any, args: tuple[Any, ...],
                           kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """The ``input.*`` attributes for this call, or None when capture is off or failed."""
        if self.capture is None:
            return None
        try:
            redactor = monitor.redactor
            values = self.capture.values(instance, args, kwargs)
            # One by one, so each argument gets the whole per-value size budget; the name is
            # checked like a mapping key, so ``password="hunter2"`` is redacted by its name.
            return {INPUT_VALUE: {name: redactor.redact_attribute(name, value)
                                  for name, value in values.items()},
                    INPUT_MIME_TYPE: _JSON}
        except Exception:
            monitor.report_failure("capture_args")
            return None

    def finish(self, monitor: Monitor, span: LiveSpan, result: Any) -> None:
        """End a call that returned ``result``: RAG attributes, capture, slow-call event."""
        try:
            end_ns = time_ns()
            if self.extractor is not None:
                found = self.extractor(result, monitor.redactor.redact)
                if found:
                    span._update(found)
            if self.capture_result:
                output = monitor.redactor.redact(result)
                span._update({OUTPUT_VALUE: output, OUTPUT_MIME_TYPE:
                                     _TEXT if type(output) is str else _JSON})
            self.check_slow(monitor, span, end_ns)
            span.end(end_ns)
        except Exception:
            monitor.report_failure("monitored")
            span.end()

    def finish_stream(self, monitor: Monitor, span: LiveSpan) -> None:
        """End a generator's span after its last item (or an early close)."""
        try:
            end_ns = time_ns()
            self.check_slow(monitor, span, end_ns)
            span.end(end_ns)
        except Exception:
            monitor.report_failure("monitored")
            span.end()

    def fail(self, monitor: Monitor, span: LiveSpan, error: BaseException) -> None:
        """End a call that raised ``error`` (the caller re-raises it unchanged)."""
        try:
            end_ns = time_ns()
            if isinstance(error, Exception):
                span.fail(error, timestamp=end_ns)  # formatting the traceback takes a while
                if self.record_errors:
                    monitor.security_event(
                        "function_error", monitor.settings.function_error_severity, self.name,
                        f"{self.name} raised {type(error).__name__}: {describe(error)}",
                        {"function": self.name, "kind": self.kind})
            else:
                # Cancellation, KeyboardInterrupt, GeneratorExit: the call was stopped from
                # outside, it did not fail, so the span keeps an ok status.
                span._set(INTERRUPTED, type(error).__name__)
            self.check_slow(monitor, span, end_ns)
            span.end(end_ns)
        except Exception:
            monitor.report_failure("monitored")
            span.end()

    def check_slow(self, monitor: Monitor, span: LiveSpan, end_ns: int) -> None:
        """A ``slow_call`` event (low) when the call took longer than its threshold."""
        threshold = self.slow_ns if self.slow_ns is not None else monitor.slow_ns
        if threshold is None:
            return
        elapsed = end_ns - span.start_ns
        if elapsed > threshold:
            monitor.security_event(
                "slow_call", Severity.LOW, self.name,
                f"{self.name} took {elapsed / 1e6:.1f} ms (threshold {threshold / 1e6:g} ms)",
                {"function": self.name, "kind": self.kind, "duration_ms": elapsed / 1e6})

