"""The hostile-input campaign's harness: one monitor per phase of a surface, and the scans that
run after it (the SQLite file, ragtrail's log output, what a real OTLP collector received).

A surface runs in two phases. The generated phase (10,000 hypothesis cases) records to a store
only, so each case stays cheap; the curated phase (the hand-written corpus) also exports to a
real OTLP receiver, which gives one export batch per surface to scan.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from instrument.otlp_receivers import RotelReceiver, wait_until
from instrument.redaction_canaries import CANARIES, leaked

from ragtrail.instrument import Monitor, configure, shutdown

__all__ = [
    "BATCH",
    "CASES",
    "CASES_PER_SURFACE",
    "CONTROL_BYTES",
    "FRAGMENTS",
    "GENERATED",
    "INJECTION_FRAGMENTS",
    "SECRET_FRAGMENTS",
    "Campaign",
    "Recipe",
    "raw_controls",
]

BATCH = 10
"""Cases per hypothesis example: the engine's own cost per example (about 0.5 ms here) is
paid once per batch, so 10,000 cases fit the campaign's time budget."""

GENERATED = settings(
    max_examples=int(os.environ.get("RAGTRAIL_HOSTILE_EXAMPLES", "1000")), deadline=None,
    derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
"""1,000 reproducible batches of ``BATCH`` cases per surface (derandomized: CI runs the same
cases every time). ``RAGTRAIL_HOSTILE_EXAMPLES`` shrinks it while developing."""

CASES_PER_SURFACE = GENERATED.max_examples * BATCH

# What must never appear raw in a stored or exported text: CR, LF (forged log lines), NUL
# (truncation in C tools) and ESC (terminal escape sequences).
CONTROL_BYTES = re.compile(rb"[\r\n\x00\x1b]")
_CONTROL_TEXT = re.compile(r"[\r\n\x00\x1b]")

# Pieces hostile strings are built from: canary secrets, log and header injection, traversal,
# quotes, bidi and zero-width characters, overlong UTF-8 written as text.
SECRET_FRAGMENTS: tuple[str, ...] = (
    *(c.text for c in CANARIES), "password=Canary-Hunter2!", "Bearer c4n4ryB34r3rT0k3nXYZ123")
INJECTION_FRAGMENTS: tuple[str, ...] = (
    "\r\n", "\n", "\r", "\x00",
    "\x1b[2J\x1b[31m", "\r\nSet-Cookie: evil=1", "\r\nX-Injected: 1", "../", "..\\", "%2e%2e%2f",
    "%252e%252e%252f", "%c0%ae%c0%ae/", "..;/", "%00", "%0d%0a", "'", '"', "`", "<script>",
    "\u202e", "\u200b", "\ufeff", "\u2028", "\x85", "é", "日本", "\U0001f600", " ", "\t", "\\",
    "%", "=", ";", ",", "\x7f", "\x9b",
)
FRAGMENTS = SECRET_FRAGMENTS + INJECTION_FRAGMENTS
# Fragments are joined with a delimiter, as secrets appear in real text: the redactor
# recognises a token by its shape, which a letter glued to its front would change.
_DELIMITERS = (" ", "\r\n", "\t", "/", "&", ";", "\x00", "\x1b")

T = TypeVar("T")


class Recipe:
    """Many small choices taken from one drawn integer: one cheap draw per case instead of
    dozens, and it still shrinks (towards 0: the first option, no fragments)."""

    __slots__ = ("bits", "seed")

    def __init__(self, bits: int) -> None:
        self.bits = self.seed = bits

    def __repr__(self) -> str:
        return f"Recipe({self.seed})"

    def below(self, n: int) -> int:
        self.bits, choice = divmod(self.bits, n)
        return choice

    def pick(self, options: Sequence[T]) -> T:
        return options[self.below(len(options))]

    def text(self, piece: str, *, secrets: bool = True) -> str:
        """``piece`` (random text hypothesis drew) with up to three fragments around it;
        ``secrets=False`` leaves the canaries out."""
        parts = [piece]
        fragments = FRAGMENTS if secrets else INJECTION_FRAGMENTS
        for _ in range(self.below(4)):
            parts.insert(self.below(len(parts) + 1), self.pick(fragments))
        return self.pick(_DELIMITERS).join(parts)

    def long_text(self, piece: str, most: int) -> str:
        """``text()`` repeated up to ``most`` times, spaced so repeats stay separate words."""
        return " ".join([self.text(piece)] * (1 + self.below(most)))


CASES = st.lists(st.tuples(st.text(max_size=12), st.integers(0, 2**256).map(Recipe)),
                 min_size=BATCH, max_size=BATCH)
"""A batch: each case is random text plus a recipe for what to build around it."""


def raw_controls(text: str) -> bool:
    return _CONTROL_TEXT.search(text) is not None


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Campaign:
    """One surface: ``generated()`` and ``curated()`` phases, each scanned when it ends."""

    def __init__(self, directory: Path, name: str, receiver: RotelReceiver,
                 extra_secrets: Iterable[str] = ()) -> None:
        self.directory = directory
        self.name = name
        self.receiver = receiver
        self.extra_secrets = tuple(extra_secrets)
        self.spans_stored = 0
        self.logs = _Records()
        self.cases = 0

    @contextmanager
    def generated(self, **settings: Any) -> Iterator[Monitor]:
        """The process-wide monitor for the generated cases (store only), scanned afterwards."""
        with self._phase("generated", None, settings) as monitor:
            yield monitor

    @contextmanager
    def curated(self, **settings: Any) -> Iterator[Monitor]:
        """The monitor for the curated corpus, exporting to the OTLP receiver too."""
        with self._phase("curated", self.receiver.http_endpoint, settings) as monitor:
            yield monitor
        self.scan_otlp(f"{self.name}-curated", self.spans_stored)

    @contextmanager
    def _phase(self, phase: str, endpoint: str | None,
               settings: dict[str, Any]) -> Iterator[Monitor]:
        database = self.directory / f"{self.name}-{phase}.db"
        settings.setdefault("queue_size", 100_000)  # nothing dropped for lack of room:
        settings.setdefault("export_queue_size", 100_000)  # neither stored nor exported
        logger = logging.getLogger("ragtrail")
        level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self.logs)
        try:
            monitor = configure(service_name=f"{self.name}-{phase}",
                                store_url=f"sqlite:///{database}", otlp_endpoint=endpoint,
                                **settings)
            yield monitor
            monitor.store.flush(30.0)
            health = monitor.store.health()
            failures = monitor.health()["failures"]
            shutdown(30.0)
        finally:
            logger.removeHandler(self.logs)
            logger.setLevel(level)
        # Nothing refused by the database (a record ragtrail could not store is lost
        # evidence) and no failsafe tripped inside ragtrail.
        assert failures == {}, failures
        assert (health.dropped, health.last_error) == (0, None), health
        self.scan_store(database)
        self.scan_logs()

    # -- scans -----------------------------------------------------------------------------

    def scan_store(self, database: Path) -> None:
        """No secret in the file's bytes (WAL included); no raw control character in any
        stored text, JSON columns included; every event's decoded fields escaped too."""
        raw = b"".join(p.read_bytes() for p in (database, Path(f"{database}-wal")) if p.exists())
        found = self._leaked(raw)
        assert found == [], [_context(raw, secret) for secret in found]
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        connection.text_factory = bytes
        try:
            self.spans_stored = connection.execute(
                "SELECT count(*) FROM ragtrail_spans").fetchone()[0]
            for table in ("ragtrail_events", "ragtrail_spans"):
                for row in connection.execute(f"SELECT * FROM {table}"):
                    for value in row:
                        if isinstance(value, bytes):
                            assert CONTROL_BYTES.search(value) is None, (table, row)
            events = connection.execute("SELECT metadata FROM ragtrail_events").fetchall()
        finally:
            connection.close()
        for (metadata,) in events:
            for text in _strings(json.loads(metadata)):
                assert not raw_controls(text), text

    def scan_logs(self) -> None:
        """ragtrail's log output (tracebacks included) names no secret, forges no line."""
        text = "\n".join(self.logs.format(r) for r in self.logs.records)
        assert self._leaked(text) == []
        for record in self.logs.records:
            assert not raw_controls(record.getMessage()), record.getMessage()

    def scan_otlp(self, service: str, expected: int) -> None:
        """What the collector received for ``service``: no secret, no raw control character
        (the OTel stack trace is multi-line by definition and is only checked for secrets)."""
        def mine() -> list[dict[str, Any]]:
            spans = [r for r in self.receiver.records()
                     if r["signal"] == "span"
                     and r.get("resource", {}).get("service.name") == service]
            return spans if len(spans) >= max(1, expected) else []

        spans = wait_until(mine, timeout=20)
        assert self._leaked(json.dumps(spans)) == []
        for span in spans:
            texts = [span["name"], span["status_message"], *_strings(span["attributes"])]
            for event in span["events"]:
                attributes = dict(event["attributes"])
                attributes.pop("exception.stacktrace", None)
                texts += [event["name"], *_strings(attributes)]
            for text in texts:
                assert not raw_controls(text), (span["name"], text)

    def _leaked(self, output: str | bytes) -> list[str]:
        found = leaked(output)  # the shared canaries, and this surface's own secrets
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
        return found + [s for s in self.extra_secrets if s in text]


def _context(raw: bytes, secret: str) -> bytes:
    """The bytes around a leaked secret, for the failure message."""
    at = raw.find(secret.encode())
    return raw[max(0, at - 160):at + len(secret) + 40]


def _strings(value: Any) -> list[str]:
    """Every string inside a decoded JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []
