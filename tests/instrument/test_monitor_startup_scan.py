"""configure() runs the start-up posture scan: in production by default, failsafe."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
from instrument_support import stored_events, stored_spans

import ragtrail.instrument
import ragtrail.security
from ragtrail import Severity
from ragtrail.instrument import Monitor, configure, monitored

FINDING = "security_posture_finding"


@pytest.fixture
def exposed_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite store file others can read (mode 0644) in a private directory."""
    for variable in ("RAGTRAIL_ENVIRONMENT", "RAGTRAIL_SECURITY_SCAN_ON_STARTUP",
                     "RAGTRAIL_SECURITY_VULNERABILITY_THRESHOLD"):
        monkeypatch.delenv(variable, raising=False)
    database = tmp_path / "audit.db"
    database.touch()
    database.chmod(0o644)
    tmp_path.chmod(0o700)
    return f"sqlite:///{database}"


def _configure(store_url: str, tmp_path: Path, **settings: object) -> Monitor:
    return configure(store_url=store_url, service_name="scan-tests",
                     quarantine_dir=str(tmp_path / "quarantine"), **settings)


def _finding_sources(monitor: Monitor) -> dict[str, Severity]:
    return {e.source: e.severity for e in stored_events(monitor) if e.event_type == FINDING}


@pytest.mark.parametrize(
    ("environment", "scan", "expected"),
    [("production", None, True), ("development", None, False),
     ("development", True, True), ("production", False, False)],
)
def test_scan_runs_by_default_in_production_and_when_asked(
        exposed_store: str, tmp_path: Path, environment: str, scan: bool | None,
        expected: bool) -> None:
    """The world-readable store file is recorded as a finding exactly when the scan is on."""
    monitor = _configure(exposed_store, tmp_path, environment=environment,
                         security_scan_on_startup=scan)
    findings = _finding_sources(monitor)
    assert ("startup_scan:store-file-readable" in findings) is expected
    if expected:
        assert findings["startup_scan:store-file-readable"] == Severity.MEDIUM


def test_findings_at_or_above_the_threshold_are_logged_as_warnings(
        exposed_store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Medium (the default threshold) is logged; with threshold critical it is only recorded."""
    caplog.set_level(logging.WARNING, logger="ragtrail.security")
    _configure(exposed_store, tmp_path, environment="production")
    assert any("store-file-readable" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    caplog.clear()
    monitor = _configure(exposed_store, tmp_path, environment="production",
                         security_vulnerability_threshold="critical")
    assert not [r for r in caplog.records if "store-file-readable" in r.getMessage()]
    assert "startup_scan:store-file-readable" in _finding_sources(monitor)


def test_a_failing_scan_never_breaks_configure(
        exposed_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """configure() returns a working monitor and counts the failure."""
    def broken(monitor: object) -> None:
        raise RuntimeError("scan exploded")

    # run_startup_scan guards its own rules, so the failure is injected to reach the guard
    # configure() keeps around the call (an import error or a bug in the scan's set-up).
    monkeypatch.setattr(ragtrail.security, "run_startup_scan", broken)
    monitor = _configure(exposed_store, tmp_path, environment="production")

    @monitored(name="after-scan")
    def step() -> int:
        return 7

    assert step() == 7
    assert [s.name for s in stored_spans(monitor)] == ["after-scan"]
    assert monitor.health()["failures"] == {"startup_scan": 1}


def test_instrument_imports_security_only_inside_functions() -> None:
    """No module of ragtrail.instrument imports ragtrail.security at module level
    (docs/architecture.md: security depends on instrument, not the reverse)."""
    package = Path(ragtrail.instrument.__file__).parent
    offenders = [
        f"{module.name}:{node.lineno}"
        for module in sorted(package.glob("*.py"))
        for node in ast.parse(module.read_text(encoding="utf-8")).body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        and any(name.startswith("ragtrail.security") for name in _imported(node))
    ]
    assert offenders == []


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return [alias.name for alias in node.names]
