"""ExportCheck: the OpenTelemetry export as a non-critical check, added when the monitor
exports. The collector here is a real absent one: a loopback port nothing listens on."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from ragtrail import SpanRecord
from ragtrail.health import ExportCheck

from ._servers import wait_until

TOKEN = "a-long-enough-test-token-0123456789"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def span(n: int) -> SpanRecord:
    return SpanRecord(name=f"step-{n}", trace_id=f"{n + 1:032x}", span_id=f"{n + 1:016x}",
                      kind="internal", start_us=time.time_ns() // 1000, duration_us=1000)


def test_no_export_no_check(make_service: Any) -> None:
    service = make_service()
    assert [c.key for c in service.checks] == ["store:queue"]


def test_a_collector_that_is_down_shows_on_the_detailed_route_not_in_readiness(
        make_monitor: Any, make_service: Any) -> None:
    monitor = make_monitor(otlp_endpoint=f"http://127.0.0.1:{closed_port()}",
                           otlp_timeout_ms=500, api_token=TOKEN)
    service = make_service(monitor=monitor)
    (check,) = [c for c in service.checks if isinstance(c, ExportCheck)]
    assert (check.key, check.critical) == ("export:queue", False)
    assert check.check().status == "pass"  # nothing exported yet, nothing failed

    for n in range(3):
        monitor.record_span(span(n))
    monitor.flush(5)
    wait_until(lambda: check.check().status == "fail", timeout=15)
    result = check.check()
    assert result.output.startswith("export failing (otlp http/protobuf http://127.0.0.1:")
    assert "failed 3" in result.output
    assert "last error: otlp export of" in result.output
    assert (result.observed_value, result.observed_unit) == (0, "spans")

    service.start()
    wait_until(lambda: "export" in service.results, timeout=15)
    wait_until(lambda: service.results["export"].status == "fail", timeout=15)
    ready = service.respond("GET", "/ready", b"verbose", {})
    assert ready.status == 200  # a collector's outage must not take pods out of service
    assert json.loads(ready.body)["status"] == "warn"
    detailed = service.respond("GET", "/api/health/detailed", b"",
                               {"authorization": f"Bearer {TOKEN}"})
    entry = json.loads(detailed.body)["checks"]["export:queue"][0]
    assert (entry["status"], entry["critical"]) == ("fail", False)
    assert "failed 3" in entry["output"]
