"""The start-up posture scan: one test per rule, on real files and real settings."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ragtrail._records import SecurityEvent, Severity
from ragtrail._settings import Settings
from ragtrail.instrument import Monitor
from ragtrail.security import SecurityFinding, run_startup_scan, scan_posture

Events = Callable[..., list[SecurityEvent]]


@pytest.fixture
def base(tmp_path: Path) -> Settings:
    """Settings with nothing to report about files: private store and quarantine paths."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    return Settings(store_url=f"sqlite:///{private / 'audit.db'}",
                    quarantine_dir=str(private / "quarantine"))


def _ids(settings: Settings) -> dict[str, Severity]:
    return {f.id: f.severity for f in scan_posture(settings)}


def _without_root(findings: dict[str, Severity]) -> dict[str, Severity]:
    findings.pop("running-as-root", None)
    return findings


def test_defaults_in_development_are_clean(base: Settings) -> None:
    """Development defaults with private files: no findings (besides running as root)."""
    assert _without_root(_ids(base)) == {}


def test_detailed_routes_open_in_production(base: Settings) -> None:
    """Open detailed routes without a token in production: high."""
    settings = base.replace(environment="production", detailed_routes_open=True,
                            trust_inbound=False)
    assert _without_root(_ids(settings)) == {"detailed-routes-open": Severity.HIGH}


def test_production_without_token_is_a_note(base: Settings) -> None:
    """Production without a token (routes closed): a low note; a token silences it."""
    settings = base.replace(environment="production", trust_inbound=False)
    assert _without_root(_ids(settings)) == {"no-api-token": Severity.LOW}
    assert _without_root(_ids(settings.replace(api_token="s3cret-token-value"))) == {}


def test_open_routes_outside_production_are_fine(base: Settings) -> None:
    """Development may open the detailed routes."""
    assert "detailed-routes-open" not in _ids(base.replace(detailed_routes_open=True))


@pytest.mark.parametrize(("mode", "expected"), [
    (0o600, {}),
    (0o640, {}),
    (0o644, {"store-file-readable": Severity.MEDIUM}),
    (0o666, {"store-file-writable": Severity.HIGH}),
])
def test_store_file_mode(base: Settings, tmp_path: Path, mode: int,
                         expected: dict[str, Severity]) -> None:
    """The SQLite store readable or writable by others is a finding."""
    database = tmp_path / "private" / "audit.db"
    database.write_bytes(b"")
    os.chmod(database, mode)
    assert _without_root(_ids(base)) == expected


def test_store_side_files_count_too(base: Settings, tmp_path: Path) -> None:
    """WAL and shared-memory files count like the database; one finding lists them all."""
    private = tmp_path / "private"
    for name, mode in (("audit.db", 0o644), ("audit.db-wal", 0o666), ("audit.db-shm", 0o644)):
        (private / name).write_bytes(b"")
        os.chmod(private / name, mode)
    findings = {f.id: f for f in scan_posture(base)}
    assert str(private / "audit.db-wal") in findings["store-file-writable"].detail
    readable = findings["store-file-readable"]
    assert readable.detail == (f"{private / 'audit.db'} (mode 0644); "
                               f"{private / 'audit.db-shm'} (mode 0644): other users can read it.")
    assert readable.remedy == f"chmod o-rwx {private / 'audit.db'} {private / 'audit.db-shm'}."


@pytest.mark.parametrize(("mode", "expected"), [
    (0o700, {}),
    (0o755, {"store-directory-readable": Severity.LOW}),
    (0o777, {"store-directory-writable": Severity.HIGH}),
    (0o1777, {"store-directory-writable": Severity.MEDIUM}),  # sticky, like /tmp
])
def test_store_directory_mode(base: Settings, tmp_path: Path, mode: int,
                              expected: dict[str, Severity]) -> None:
    """The store's directory open to others is a finding; sticky softens writability."""
    os.chmod(tmp_path / "private", mode)
    assert _without_root(_ids(base)) == expected


def test_store_url_forms(tmp_path: Path) -> None:
    """Relative, URI-style and in-memory SQLite URLs, a bare path (a SQLite file too);
    non-SQLite stores are not checked."""
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    quarantine = str(tmp_path / "q")
    for url in (f"sqlite:///{loose / 'a.db'}", f"sqlite+pysqlite:///{loose / 'a.db'}",
                f"sqlite:///file:{loose / 'a.db'}?mode=ro&uri=true", str(loose / "a.db")):
        findings = _ids(Settings(store_url=url, quarantine_dir=quarantine))
        assert findings.get("store-directory-writable") == Severity.HIGH, url
    for url in ("sqlite://", "sqlite:///:memory:", "postgresql://u@db.example/x"):
        findings = _ids(Settings(store_url=url, quarantine_dir=quarantine))
        assert not any(key.startswith("store-") for key in findings), url


@pytest.mark.parametrize(("mode", "expected"), [
    (0o700, {}),
    (0o750, {"quarantine-directory-readable": Severity.MEDIUM}),
    (0o701, {"quarantine-directory-readable": Severity.MEDIUM}),
    (0o770, {"quarantine-directory-writable": Severity.HIGH}),
])
def test_quarantine_directory_mode(base: Settings, mode: int,
                                   expected: dict[str, Severity]) -> None:
    """Anything beyond 0700 on the quarantine directory is a finding."""
    directory = Path(base.quarantine_dir)
    directory.mkdir()
    os.chmod(directory, mode)
    assert _without_root(_ids(base)) == expected


@pytest.mark.parametrize(("environment", "severity"), [
    ("production", Severity.MEDIUM), ("development", Severity.LOW)])
def test_an_unbounded_quarantine_is_a_finding(base: Settings, environment: str,
                                              severity: Severity) -> None:
    """No size bound and no free-space floor: a flood of rejected uploads fills the disk.
    Either bound alone silences it."""
    unbounded = base.replace(environment=environment, trust_inbound=False, api_token="t" * 32,
                             quarantine_max_bytes=0, quarantine_min_free_bytes=0)
    assert _without_root(_ids(unbounded)) == {"quarantine-unbounded": severity}
    assert _without_root(_ids(unbounded.replace(quarantine_max_bytes=1))) == {}
    assert _without_root(_ids(unbounded.replace(quarantine_min_free_bytes=1))) == {}


def test_a_quarantine_that_is_not_a_directory(base: Settings) -> None:
    """A file where the quarantine should be: every rejection would fail to quarantine (a
    traceback each; through the upload helpers the rejected upload is gone). Said at start."""
    Path(base.quarantine_dir).write_text("not a directory")
    os.chmod(base.quarantine_dir, 0o600)  # no mode finding to hide behind
    assert _without_root(_ids(base)) == {"quarantine-not-a-directory": Severity.HIGH}


def test_a_quarantine_on_a_read_only_volume(base: Settings,
                                            read_only_view: tuple[Path, Path]) -> None:
    source, view = read_only_view
    os.chmod(source, 0o700)
    findings = _without_root(_ids(dataclasses.replace(base, quarantine_dir=str(view))))
    assert findings == {"quarantine-not-writable": Severity.HIGH}


@pytest.mark.parametrize(("endpoint", "headers", "expected"), [
    ("http://collector.example:4318", {}, {"otlp-plaintext": Severity.MEDIUM}),
    ("HTTP://10.0.0.5:4318/", {"api-key": "k"}, {"otlp-plaintext-credentials": Severity.HIGH}),
    ("https://collector.example:4318", {"api-key": "k"}, {}),
    ("http://localhost:4318", {}, {}),
    ("http://127.0.0.1:4318", {}, {}),
    ("http://[::1]:4318", {}, {}),
    ("http://otel.localhost:4318", {}, {}),
    ("collector.example:4317", {}, {}),  # gRPC without a scheme: TLS unless told otherwise
])
def test_otlp_transport(base: Settings, endpoint: str, headers: dict[str, str],
                        expected: dict[str, Severity]) -> None:
    """OTLP over plain http to a non-loopback host is a finding; with credentials, high."""
    protocol = "http/protobuf" if "://" in endpoint else "grpc"  # only gRPC takes host:port
    settings = base.replace(otlp_endpoint=endpoint, otlp_headers=headers, otlp_protocol=protocol)
    assert _without_root(_ids(settings)) == expected


@pytest.mark.parametrize("signal", ["otlp_traces_endpoint", "otlp_metrics_endpoint"])
def test_otlp_transport_of_a_signals_own_endpoint(base: Settings, signal: str) -> None:
    """A plain-http signal endpoint is judged like the shared one, even behind a safe one."""
    settings = base.replace(otlp_endpoint="https://collector.example:4318",
                            **{signal: "http://collector.example:4318/v1/x"})
    assert _without_root(_ids(settings)) == {"otlp-plaintext": Severity.MEDIUM}


@pytest.mark.parametrize(("headers", "expected"), [
    ({"otlp_metrics_headers": {"api-key": "k"}}, {"otlp-plaintext-credentials": Severity.HIGH}),
    # The plain-http signal's own headers replace the shared ones: none go out in the clear.
    ({"otlp_headers": {"api-key": "k"}, "otlp_metrics_headers": {}},
     {"otlp-plaintext": Severity.MEDIUM}),
    ({"otlp_traces_headers": {"api-key": "k"}}, {"otlp-plaintext": Severity.MEDIUM}),
])
def test_otlp_transport_judges_the_headers_of_the_plaintext_signal(
        base: Settings, headers: dict[str, dict[str, str]], expected: dict[str, Severity]
        ) -> None:
    """Credentials are a finding when the signal that travels in the clear carries them."""
    settings = base.replace(otlp_traces_endpoint="https://collector.example:4318/v1/traces",
                            otlp_metrics_endpoint="http://collector.example:4318/v1/metrics",
                            **headers)
    assert _without_root(_ids(settings)) == expected


def test_alert_webhook_transport(base: Settings) -> None:
    """An alert webhook over plain http to a remote host is a finding."""
    settings = base.replace(alert_webhook_url="http://hooks.example/T000/B000")
    assert _without_root(_ids(settings)) == {"alert-webhook-plaintext": Severity.MEDIUM}
    assert _without_root(_ids(base.replace(alert_webhook_url="https://hooks.example/x"))) == {}


def test_redaction_disabled(base: Settings) -> None:
    """Redaction off: low in development, medium in production."""
    assert _without_root(_ids(base.replace(redaction_enabled=False))) == {
        "redaction-disabled": Severity.LOW}
    production = base.replace(redaction_enabled=False, environment="production",
                              api_token="t" * 32, trust_inbound=False)
    assert _without_root(_ids(production)) == {"redaction-disabled": Severity.MEDIUM}


def test_trusted_correlation_ids_in_production(base: Settings) -> None:
    """Trusting clients' correlation IDs in production is a low finding."""
    settings = base.replace(environment="production", api_token="t" * 32)
    assert _without_root(_ids(settings)) == {"correlation-ids-trusted": Severity.LOW}


def test_debug_in_production(base: Settings) -> None:
    """Debug mode in production is high; in development it is fine."""
    assert _without_root(_ids(base.replace(debug=True))) == {}
    settings = base.replace(debug=True, environment="prod", api_token="t" * 32,
                            trust_inbound=False)
    assert _without_root(_ids(settings)) == {"debug-in-production": Severity.HIGH}


def test_running_as_root(base: Settings) -> None:
    """Root (the CI user): medium in development, high in production; otherwise none."""
    if os.geteuid() != 0:
        assert "running-as-root" not in _ids(base)
        return
    assert _ids(base)["running-as-root"] == Severity.MEDIUM
    assert _ids(base.replace(environment="production"))["running-as-root"] == Severity.HIGH


def test_findings_are_sorted_and_serialisable(base: Settings) -> None:
    """Most severe first, then by id; ``as_dict`` names the severity."""
    settings = base.replace(environment="production", debug=True, redaction_enabled=False)
    findings = scan_posture(settings)
    keys = [(-f.severity, f.id) for f in findings]
    assert keys == sorted(keys)
    assert findings[0].as_dict()["severity"] == "high"
    assert set(findings[0].as_dict()) == {"id", "severity", "title", "detail", "remedy"}


def test_a_failing_rule_does_not_stop_the_scan(base: Settings, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """A rule that raises is logged and skipped; the other rules still report."""
    import ragtrail.security._posture as posture

    def broken(settings: Settings) -> list[SecurityFinding]:
        raise RuntimeError("boom")

    monkeypatch.setattr(posture, "_RULES", (broken, *posture._RULES))
    with caplog.at_level(logging.ERROR, logger="ragtrail.security"):
        ids = _ids(base.replace(debug=True, environment="production"))
    assert "debug-in-production" in ids
    assert "rule broken failed" in caplog.text


def test_startup_scan_records_events_and_logs_warnings(
        monitor: Monitor, stored_events: Events, caplog: pytest.LogCaptureFixture,
        tmp_path: Path) -> None:
    """One event per finding at its severity; warnings only at or above the threshold."""
    os.chmod(tmp_path, 0o755)
    with caplog.at_level(logging.WARNING, logger="ragtrail.security"):
        findings = run_startup_scan(monitor)
    by_id = {f.id: f for f in findings}
    assert "store-directory-readable" in by_id  # tmp_path is 0755: low
    events = stored_events("security_posture_finding")
    assert sorted((e.metadata["finding"], e.severity) for e in events) == sorted(
        (f.id, f.severity) for f in findings)
    assert all(e.source == f"startup_scan:{e.metadata['finding']}" for e in events)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    threshold = monitor.settings.security_vulnerability_threshold
    assert len(warned) == sum(f.severity >= threshold for f in findings)
    assert not any("store-directory-readable" in message for message in warned)
