"""``FileValidator``: decide whether a document may enter the RAG index, and quarantine it if not.

One pass over the file computes its sha256 and, for text formats, the strict UTF-8 check
(``_file_scan``); the type-specific checks then read only what they need (``_content``: the ZIP
central directory, the first CSV rows). The file is opened once, without following symlinks.
This module ties them together and records the events.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import io
import logging
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from ragtrail._records import Severity
from ragtrail.security._content import (
    EXTENSION_TYPES,
    INVALID,
    JUDGED_FROM_SCAN,
    Verdict,
    claim,
    judge,
    normalise_extension,
)
from ragtrail.security._events import (
    EventSink,
    current_correlation_id,
    record_event,
    resolve_monitor,
)
from ragtrail.security._file_scan import changed_since, scan_file, sha256_of, starts_executable
from ragtrail.security._files import READ_REGULAR_ONLY, ChangedFileError
from ragtrail.security._names import escape_text, sanitize_filename
from ragtrail.security._quarantine import Quarantine, QuarantineFull
from ragtrail.security._quarantine_bound import Evicted
from ragtrail.security._sniff import TEXT_TYPES, Utf8Check
from ragtrail.security._zipcheck import ZipLimits

__all__ = ["FileValidator", "ValidationResult"]

INTEGRITY: Final = "file_integrity_fail"
SOURCE: Final = "file_validator"
OVERFLOW: Final = "quarantine_overflow"
QUARANTINE_SOURCE: Final = "quarantine"
_EVICTED_SHOWN = 10  # hashes of evicted files in one event (its metadata is capped at 4 KB)

DEFAULT_MAX_BYTES: Final = 50 * 1024 * 1024
_NAME_LIMIT = 1024  # characters of the client's name kept in sidecars and events

logger = logging.getLogger("ragtrail.security")


class _Default(enum.Enum):
    FROM_SETTINGS = "settings.quarantine_dir"


@dataclass(frozen=True)
class ValidationResult:
    """What the validator decided about one file.

    ``reason`` is None when accepted. ``claimed_type`` is what the extension says (the bare
    extension if it is not one the validator knows); ``detected_type`` what the bytes say.
    ``quarantine_path`` is where a rejected file now is (None if it was not moved).
    """

    accepted: bool
    reason: str | None
    sanitised_name: str
    detected_type: str
    claimed_type: str
    size: int
    sha256: str
    event_type: str | None = None
    quarantine_path: Path | None = None


class FileValidator:
    """Checks documents before ingestion; see ``docs/security.md``.

    ``quarantine_dir`` defaults to the monitor's ``settings.quarantine_dir``; None leaves
    rejected files where they are. ``monitor`` defaults to ``ragtrail.get_monitor()`` at the
    time of each event.

    >>> validator = FileValidator(max_bytes=10_000_000, allowed_extensions=[".pdf", ".md"])
    >>> sorted(validator.allowed_extensions)
    ['.md', '.pdf']
    """

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        allowed_extensions: Iterable[str] = tuple(EXTENSION_TYPES),
        quarantine_dir: str | os.PathLike[str] | _Default | None = _Default.FROM_SETTINGS,
        monitor: EventSink | None = None,
        zip_limits: ZipLimits | None = None,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1; got {max_bytes}")
        self.max_bytes = max_bytes
        self.allowed_extensions = frozenset(normalise_extension(e) for e in allowed_extensions)
        self.zip_limits = zip_limits or ZipLimits()
        self._quarantine_dir = quarantine_dir
        self._monitor = monitor

    @property
    def quarantine(self) -> Quarantine | None:
        """Where rejected files go, and its bounds, resolved now (the monitor may have been
        reconfigured)."""
        directory = self._quarantine_dir
        if directory is None:
            return None
        settings = resolve_monitor(self._monitor).settings
        if isinstance(directory, _Default):
            directory = settings.quarantine_dir
        return Quarantine(directory, max_bytes=settings.quarantine_max_bytes,
                          max_files=settings.quarantine_max_files,
                          min_free_bytes=settings.quarantine_min_free_bytes)

    def validate(self, path: str | os.PathLike[str], *,
                 filename: str | None = None) -> ValidationResult:
        """Validate the file at ``path``, named ``filename`` by the client (default: its name).

        A rejected file is moved to the quarantine and a high security event is recorded. A
        path that is a symlink or not a regular file is rejected and left alone.
        """
        original = filename if filename is not None else os.fsdecode(os.path.basename(path))
        name = sanitize_filename(original)
        extension, claimed = claim(name)
        try:
            fd = os.open(path, READ_REGULAR_ONLY)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            return self.refuse(original, "a symbolic link, not a file to validate")
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                return self.refuse(original, "not a regular file")
            if info.st_size > self.max_bytes and not starts_executable(f):
                # Neither read nor quarantined, as an upload over the limit is not received:
                # a 4 GiB file was hashed whole and copied into the quarantine whole.
                return self.refuse(original, f"file is {info.st_size} bytes; the limit is "
                                             f"{self.max_bytes}", size=info.st_size)
            utf8 = Utf8Check() if claimed in TEXT_TYPES else None
            # A file that grows while it is read is read no further than this.
            scan = scan_file(f, utf8, max(info.st_size, self.max_bytes) + 1)
            size, sha256 = scan.size, scan.sha256
            # The checks must judge the bytes hashed: a small file from the chunk the scan read,
            # a larger one from the file, which is then hashed again if they read it.
            judged = f if scan.copy is None else io.BytesIO(scan.copy)
            verdict = self._judge(judged, extension, claimed, size, scan.head, scan.tail, utf8)
            changed = changed_since(f, info, scan, reread=claimed not in JUDGED_FROM_SCAN)
        if changed:
            # Not quarantined either: no hash describes the file as it is.
            return self.refuse(original, "the file changed while it was validated", size=size)
        result = ValidationResult(
            accepted=verdict.problem is None, reason=verdict.problem, sanitised_name=name,
            detected_type=verdict.detected_type, claimed_type=claimed, size=size, sha256=sha256,
            event_type=None if verdict.problem is None else verdict.event_type)
        return result if result.accepted else self._reject(path, original, result, info)

    def precheck(self, filename: str, *, size: int | None = None) -> ValidationResult | None:
        """Refuse early what no content could save: a disallowed extension or a known size
        over the limit. None means go on and receive the file.

        For upload handlers, before reading a body (``size`` from ``Content-Length``).
        """
        extension = claim(sanitize_filename(filename))[0]
        if extension not in self.allowed_extensions:
            return self.refuse(filename, f"extension {extension or '(none)'!r} is not allowed",
                               size=size or 0)
        if size is not None and size > self.max_bytes:
            return self.refuse(filename, f"file is larger than the limit of {self.max_bytes} "
                                         "bytes", size=size)
        return None

    def refuse(self, filename: str, reason: str, *, size: int = 0) -> ValidationResult:
        """Reject a file that was never received whole or could not be read.

        Records an ``input_validation_fail`` event (high); nothing is quarantined and
        ``sha256`` is empty because there was nothing complete to hash.
        """
        name = sanitize_filename(filename)
        result = ValidationResult(
            accepted=False, reason=reason, sanitised_name=name, detected_type="unread",
            claimed_type=claim(name)[1], size=size, sha256="", event_type=INVALID)
        self._event(result, self._names_shown(filename), None)
        return result

    def verify(self, path: str | os.PathLike[str], expected_sha256: str) -> bool:
        """True if the file still has the sha256 it was accepted with.

        A changed or missing file records a ``file_integrity_fail`` event (high).
        """
        expected = expected_sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", expected):
            raise ValueError("expected_sha256 must be 64 hex characters")
        actual: str | None = None
        try:
            # As validate() opens it: a FIFO put in its place must not hang an integrity job,
            # nor a symlink or directory pass for the file (or raise without an event).
            with os.fdopen(os.open(path, READ_REGULAR_ONLY), "rb") as f:
                regular = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
                actual = sha256_of(f) if regular else None
            what = "changed since it was accepted" if regular else "is no longer a regular file"
        except FileNotFoundError:
            what = "is missing"
        except OSError as exc:  # ELOOP: a symbolic link now
            what = f"cannot be read as the file it was ({exc.strerror})"
        if actual == expected:
            return True
        shown = escape_text(os.fsdecode(path), limit=_NAME_LIMIT)
        record_event(self._monitor, INTEGRITY, Severity.HIGH, SOURCE,
                     f"stored file {shown} {what}",
                     {"path": shown, "expected_sha256": expected, "actual_sha256": actual})
        return False

    def _judge(self, f: BinaryIO, extension: str, claimed: str, size: int, head: bytes,
               tail: bytes, utf8: Utf8Check | None) -> Verdict:
        return judge(f, extension, claimed, size, head, tail, utf8, max_bytes=self.max_bytes,
                     allowed_extensions=self.allowed_extensions, zip_limits=self.zip_limits)

    def _reject(self, path: str | os.PathLike[str], original: str, result: ValidationResult,
                judged: os.stat_result) -> ValidationResult:
        correlation_id = _safe_correlation_id()
        names = self._names_shown(original)
        details = {
            "reason": result.reason, "event_type": result.event_type,
            "original_name": names[0], "sanitised_name": names[1],
            "size": result.size, "claimed_type": result.claimed_type,
            "detected_type": result.detected_type, "correlation_id": correlation_id,
        }
        moved = None
        not_moved: str | None = None
        try:
            quarantine = self.quarantine
            if quarantine is not None:
                kept = quarantine._keep(Path(path), result.sha256, details, judged)
                moved = kept.path
                if kept.evicted:
                    self._overflow(result, f"evicted {len(kept.evicted)} least recently "
                                           "rejected file(s) to make room", kept.evicted)
        except QuarantineFull as exc:  # still rejected; left where it is
            not_moved = str(exc)
            self._overflow(result, not_moved, ())
        except ChangedFileError as exc:  # swapped while it was judged: left where it is
            not_moved = str(exc.strerror)
        except OSError as exc:
            # Still rejected; the file stays where it is and the event says it was not moved.
            not_moved = str(exc.strerror or type(exc).__name__)
            logger.exception("ragtrail could not quarantine a rejected file")
        result = dataclasses.replace(result, quarantine_path=moved)
        self._event(result, names, moved, not_moved)
        return result

    def _overflow(self, result: ValidationResult, what: str,
                  evicted: tuple[Evicted, ...]) -> None:
        """One event per rejection that cost the quarantine a file: medium, as the rejection
        itself is already a high event; its type is counted in the monitor's health."""
        # One source each, so the store never coalesces refusals into evictions.
        source = f"{QUARANTINE_SOURCE}:{'evicted' if evicted else 'not_kept'}"
        record_event(self._monitor, OVERFLOW, Severity.MEDIUM, source,
                     f"quarantine full: {what}", {
                         "sha256": result.sha256, "size": result.size,
                         "evicted_files": len(evicted),
                         "evicted_bytes": sum(e.size for e in evicted),
                         "evicted_sha256": [e.sha256 for e in evicted[:_EVICTED_SHOWN]]})

    def _names_shown(self, original: str) -> tuple[str, str]:
        """The client's name escaped, and sanitised, as events and the quarantine's records
        show them: secrets masked first, since sanitising turns the quotes and colons the
        redactor keys on into ``_`` (``{"token": "..."}.pdf`` reached the store readable)."""
        masked = resolve_monitor(self._monitor).redactor.redact_text(original)
        return escape_text(masked, limit=_NAME_LIMIT), sanitize_filename(masked)

    def _event(self, result: ValidationResult, names: tuple[str, str], moved: Path | None,
               not_moved: str | None = None) -> None:
        escaped_name, shown_name = names
        metadata = {
            "sha256": result.sha256, "size": result.size, "claimed_type": result.claimed_type,
            "detected_type": result.detected_type, "sanitised_name": shown_name,
            "original_name": escaped_name,
            "quarantine_path": None if moved is None else str(moved)}
        if not_moved is not None:
            metadata["quarantine_error"] = not_moved
        record_event(self._monitor, result.event_type or INVALID, Severity.HIGH, SOURCE,
                     f"rejected file {shown_name}: {result.reason}", metadata)


def _safe_correlation_id() -> str | None:
    try:
        return current_correlation_id()
    except Exception:  # the sidecar is worth more than the ID
        return None
