"""The start-up posture scan: settings and file modes that leave a deployment exposed.

Each rule is a small function from settings to findings; a rule that fails is logged and
skipped, so the scan never stops a service from starting. ``ragtrail scan`` runs the same
rules for CI pipelines.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ragtrail._records import Severity
from ragtrail._settings import Settings
from ragtrail.instrument._export_otlp import signal_target
from ragtrail.security._events import EventSink, record_event

__all__ = ["SecurityFinding", "run_startup_scan", "scan_posture"]

logger = logging.getLogger("ragtrail.security")

EVENT_TYPE = "security_posture_finding"
SOURCE = "startup_scan"


@dataclass(frozen=True)
class SecurityFinding:
    """One weakness: a stable ``id`` for suppressions and dashboards, and what to do."""

    id: str
    severity: Severity
    title: str
    detail: str
    remedy: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "severity": str(self.severity), "title": self.title,
                "detail": self.detail, "remedy": self.remedy}


_Rule = Callable[[Settings], Iterator[SecurityFinding]]


def scan_posture(settings: Settings, *, monitor: EventSink | None = None) -> list[SecurityFinding]:
    """Every finding for ``settings`` and this process, most severe first.

    With ``monitor``, each finding is also recorded as a ``security_posture_finding`` event at
    its severity, from source ``startup_scan:<finding id>``.

    >>> [f.id for f in scan_posture(Settings(environment="production", debug=True,
    ...                                      store_url="sqlite://"))][:1]
    ['debug-in-production']
    """
    findings: list[SecurityFinding] = []
    for rule in _RULES:
        try:
            findings.extend(rule(settings))
        except Exception:
            logger.exception("ragtrail security scan: rule %s failed", rule.__name__)
    findings.sort(key=lambda f: (-f.severity, f.id))
    if monitor is not None:
        for finding in findings:
            # One source per finding: the store coalesces events by (type, source, severity),
            # which would otherwise merge two different findings of one severity into one row.
            record_event(monitor, EVENT_TYPE, finding.severity, f"{SOURCE}:{finding.id}",
                         finding.title,
                         {"finding": finding.id, "detail": finding.detail,
                          "remedy": finding.remedy})
    return findings


def run_startup_scan(monitor: EventSink) -> list[SecurityFinding]:
    """Scan, record one event per finding, and log findings at or above
    ``settings.security_vulnerability_threshold`` as warnings. Never raises.
    """
    try:
        findings = scan_posture(monitor.settings, monitor=monitor)
        threshold = monitor.settings.security_vulnerability_threshold
        for finding in findings:
            if finding.severity >= threshold:
                logger.warning("ragtrail security scan: %s (%s, %s). %s %s", finding.title,
                               finding.severity, finding.id, finding.detail, finding.remedy)
    except Exception:
        logger.exception("ragtrail security scan failed")
        return []
    return findings


def _detailed_routes(settings: Settings) -> Iterator[SecurityFinding]:
    if not settings.is_production or settings.api_token:
        return
    if settings.detailed_routes_open:
        yield SecurityFinding(
            "detailed-routes-open", Severity.HIGH,
            "Detailed health routes are open in production without a token",
            "RAGTRAIL_DETAILED_ROUTES_OPEN is on and RAGTRAIL_API_TOKEN is unset, so anyone who "
            "reaches the service can read recent security events, metrics and store health.",
            "Set RAGTRAIL_API_TOKEN, or turn RAGTRAIL_DETAILED_ROUTES_OPEN off.")
    else:
        yield SecurityFinding(
            "no-api-token", Severity.LOW, "No API token in production",
            "RAGTRAIL_API_TOKEN is unset, so the detailed health routes answer 404.",
            "Set RAGTRAIL_API_TOKEN to a long random value to use the detailed routes.")


def _store_files(settings: Settings) -> Iterator[SecurityFinding]:
    database = _sqlite_path(settings.store_url)
    if database is None:
        return
    files = [Path(f"{database}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")]
    yield from _exposed(files, "store-file", "The audit store file", group_ok=True)
    yield from _exposed([database.parent], "store-directory", "The audit store's directory",
                        group_ok=True)


def _quarantine_directory(settings: Settings) -> Iterator[SecurityFinding]:
    directory = Path(settings.quarantine_dir)
    # Every rejection would fail to quarantine (a traceback each, the file left behind or,
    # through the upload helpers, gone): said at start-up rather than at the first attack.
    if directory.exists() and not directory.is_dir():
        yield SecurityFinding(
            "quarantine-not-a-directory", Severity.HIGH, "The quarantine is not a directory",
            f"{directory} exists and is not a directory: rejected files cannot be quarantined.",
            "Point RAGTRAIL_QUARANTINE_DIR at a directory (it is created 0700 if missing).")
        return
    if directory.is_dir() and not os.access(directory, os.W_OK | os.X_OK):
        yield SecurityFinding(
            "quarantine-not-writable", Severity.HIGH, "The quarantine cannot be written",
            f"{directory} is not writable by this process (a read-only volume, another "
            "owner): rejected files cannot be quarantined.",
            "Mount the quarantine read-write, or point RAGTRAIL_QUARANTINE_DIR elsewhere.")
    yield from _exposed([directory], "quarantine-directory", "The quarantine directory",
                        group_ok=False)
    if not settings.quarantine_max_bytes and not settings.quarantine_min_free_bytes:
        yield SecurityFinding(
            "quarantine-unbounded", Severity.MEDIUM if settings.is_production else Severity.LOW,
            "The quarantine can fill its disk",
            "RAGTRAIL_QUARANTINE_MAX_BYTES and RAGTRAIL_QUARANTINE_MIN_FREE_BYTES are both 0: "
            "every rejected upload is kept, so a flood of bad files fills the disk.",
            "Set RAGTRAIL_QUARANTINE_MAX_BYTES or RAGTRAIL_QUARANTINE_MIN_FREE_BYTES (both "
            "default to 1 GiB).")


def _otlp_transport(settings: Settings) -> Iterator[SecurityFinding]:
    plaintext = [target for target in (signal_target(settings, "traces"),
                                       signal_target(settings, "metrics"))
                 if target.endpoint and _plaintext_remote(target.endpoint)]
    if not plaintext:
        return
    with_headers = [target for target in plaintext if target.headers]
    if with_headers:
        yield SecurityFinding(
            "otlp-plaintext-credentials", Severity.HIGH,
            "OTLP headers are sent over plain HTTP to a remote host",
            f"{_host(with_headers[0].endpoint or '')} receives telemetry and the OTLP headers "
            "(OTEL_EXPORTER_OTLP_HEADERS or a per-signal form; often an API key) unencrypted.",
            "Use an https:// endpoint, or a collector on the same host or pod.")
    else:
        yield SecurityFinding(
            "otlp-plaintext", Severity.MEDIUM, "OTLP export over plain HTTP to a remote host",
            f"Spans and events sent to {_host(plaintext[0].endpoint or '')} can be read or "
            "altered on the way.",
            "Use an https:// endpoint, or a collector on the same host or pod.")


def _webhook_transport(settings: Settings) -> Iterator[SecurityFinding]:
    url = settings.alert_webhook_url
    if url is not None and _plaintext_remote(url):
        yield SecurityFinding(
            "alert-webhook-plaintext", Severity.MEDIUM,
            "Alert webhook over plain HTTP to a remote host",
            f"Alerts posted to {_host(url)} can be read or forged on the way.",
            "Use an https:// webhook URL.")


def _redaction(settings: Settings) -> Iterator[SecurityFinding]:
    if not settings.redaction_enabled:
        yield SecurityFinding(
            "redaction-disabled",
            Severity.MEDIUM if settings.is_production else Severity.LOW,
            "Redaction is disabled",
            "Secrets and personal data in captured arguments, errors and events are stored and "
            "exported as they are.",
            "Unset RAGTRAIL_REDACTION_ENABLED (it defaults to on).")


def _trusted_correlation(settings: Settings) -> Iterator[SecurityFinding]:
    # Severity low: inbound IDs are format-checked by the middleware, so the risk is a
    # client choosing or reusing IDs to confuse an investigation, not injection.
    if settings.is_production and settings.trust_inbound:
        yield SecurityFinding(
            "correlation-ids-trusted", Severity.LOW,
            "Clients' correlation IDs are trusted in production",
            "RAGTRAIL_TRUST_INBOUND is on: a client can choose the correlation ID its requests "
            "are logged under. Fine behind a gateway that sets the header itself.",
            "On a public edge, set RAGTRAIL_TRUST_INBOUND=false.")


def _root(settings: Settings) -> Iterator[SecurityFinding]:
    geteuid = getattr(os, "geteuid", None)  # absent on Windows
    if geteuid is not None and geteuid() == 0:
        yield SecurityFinding(
            "running-as-root", Severity.HIGH if settings.is_production else Severity.MEDIUM,
            "The service runs as root",
            "A bug in the service or a parser of uploaded documents gets the whole machine or "
            "container; root also reads and writes files whatever their mode.",
            "Run as an unprivileged user (Dockerfile USER, Kubernetes runAsNonRoot).")


def _debug(settings: Settings) -> Iterator[SecurityFinding]:
    if settings.debug and settings.is_production:
        yield SecurityFinding(
            "debug-in-production", Severity.HIGH, "Debug mode is on in production",
            "RAGTRAIL_DEBUG is on: more internals are logged and exposed than production needs.",
            "Unset RAGTRAIL_DEBUG in production.")


_RULES: tuple[_Rule, ...] = (
    _detailed_routes, _store_files, _quarantine_directory, _otlp_transport, _webhook_transport,
    _redaction, _trusted_correlation, _root, _debug,
)


def _exposed(paths: list[Path], finding_id: str, what: str, *,
             group_ok: bool) -> Iterator[SecurityFinding]:
    """At most one "writable" and one "readable" finding for files others can reach."""
    writers = stat.S_IWOTH | (0 if group_ok else stat.S_IWGRP)
    readers = stat.S_IROTH | (0 if group_ok else stat.S_IRGRP | stat.S_IXGRP | stat.S_IXOTH)
    writable: list[tuple[Path, int, bool]] = []
    readable: list[tuple[Path, int, bool]] = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:  # not created yet: it will be created with a safe mode
            continue
        mode = stat.S_IMODE(info.st_mode)
        directory = stat.S_ISDIR(info.st_mode)
        if mode & writers:
            writable.append((path, mode, directory and bool(mode & stat.S_ISVTX)))
        elif mode & readers:
            readable.append((path, mode, directory))
    shown = "; ".join
    if writable:
        all_sticky = all(sticky for _, _, sticky in writable)
        yield SecurityFinding(
            f"{finding_id}-writable", Severity.MEDIUM if all_sticky else Severity.HIGH,
            f"{what} is writable by other users",
            shown(f"{p} (mode {m:04o})" for p, m, _ in writable)
            + ": other users can replace, delete or plant files.",
            f"chmod o-w{'' if group_ok else ',g-w'} {' '.join(str(p) for p, _, _ in writable)} "
            "(or move it somewhere private).")
    if readable:
        all_directories = all(directory for _, _, directory in readable)
        yield SecurityFinding(
            f"{finding_id}-readable",
            Severity.LOW if all_directories and group_ok else Severity.MEDIUM,
            f"{what} is readable by other users",
            shown(f"{p} (mode {m:04o})" for p, m, _ in readable)
            + f": other users can read {'the listing' if all_directories else 'it'}.",
            f"chmod {'o-rwx' if group_ok else 'go-rwx'} "
            f"{' '.join(str(p) for p, _, _ in readable)}.")


def _sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite store URL; None for other databases and ``:memory:``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # a SQLite URI filename (?uri=true)
        database = database[len("file:"):].split("?", 1)[0]
    return Path(database).absolute()


def _plaintext_remote(url: str) -> bool:
    parts = urlsplit(url.strip())
    return parts.scheme.lower() == "http" and not _is_loopback(parts.hostname or "")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761 6.3
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host(url: str) -> str:
    parts = urlsplit(url.strip())
    return parts.hostname or "the endpoint"
