"""HTTPCheck against a real server on 127.0.0.1, FilesystemCheck and DatabaseCheck on SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from ragtrail.demo import FakeOllama
from ragtrail.health import CheckResult, DatabaseCheck, FilesystemCheck, HTTPCheck

from ._servers import unused_port, wait_until
from .conftest import ServiceFactory


def run(check: HTTPCheck) -> CheckResult:
    return asyncio.run(check.check())


def test_http_check_passes_with_response_time(ollama: FakeOllama) -> None:
    """A 200 from /api/tags passes; the observed value is the response time in ms."""
    result = run(HTTPCheck(ollama.tags_url, name="ollama"))
    assert (result.status, result.observed_unit, result.output) == ("pass", "ms", "")
    assert isinstance(result.observed_value, float)
    assert 0 <= result.observed_value < 1000
    assert ollama.requests == 1


def test_http_check_fails_on_unexpected_status(ollama: FakeOllama) -> None:
    """A 500 is a failure naming the status and what was expected."""
    ollama.mode = "failing"
    result = run(HTTPCheck(ollama.tags_url, name="ollama"))
    assert (result.status, result.output) == ("fail", "HTTP 500, expected 200")


def test_http_check_accepts_a_set_of_statuses(ollama: FakeOllama) -> None:
    """expect_status may list several codes."""
    ollama.mode = "failing"
    assert run(HTTPCheck(ollama.tags_url, expect_status={200, 500})).status == "pass"


def test_http_check_warns_when_slow(ollama: FakeOllama) -> None:
    """warn_after_ms turns a slow but correct answer into a warning."""
    ollama.mode, ollama.slow_seconds = "slow", 0.15
    result = run(HTTPCheck(ollama.tags_url, warn_after_ms=50))
    assert result.status == "warn"
    assert result.output.startswith("slow: ")


def test_http_check_on_absent_server_raises_connection_refused() -> None:
    """Nothing listening: the check raises, which the runner reports as fail."""
    with pytest.raises(ConnectionRefusedError):
        run(HTTPCheck(f"http://127.0.0.1:{unused_port()}/api/tags"))


def test_http_check_rejects_a_non_http_answer() -> None:
    """A server that answers garbage is not healthy."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def garbage() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(1024)
            connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    thread = threading.Thread(target=garbage, daemon=True)
    thread.start()
    try:
        result = run(HTTPCheck(f"http://127.0.0.1:{port}/"))
    finally:
        thread.join(5)
        listener.close()
    assert (result.status, result.output) == (
        "fail", "the server did not answer with an HTTP status line")


def test_http_check_sends_host_and_custom_headers() -> None:
    """The request carries Host with the port and any configured headers."""
    seen: dict[str, Any] = {}
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def capture() -> None:
        connection, _ = listener.accept()
        with connection:
            seen["request"] = connection.recv(4096).decode()
            connection.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    try:
        result = run(HTTPCheck(f"http://127.0.0.1:{port}/v1/health?deep=1", expect_status=204,
                               headers={"Authorization": "Bearer abc"}))
    finally:
        thread.join(5)
        listener.close()
    lines = seen["request"].split("\r\n")
    assert result.status == "pass"
    assert lines[0] == "GET /v1/health?deep=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}" in lines
    assert "Authorization: Bearer abc" in lines


@pytest.mark.parametrize(("url", "name"), [
    ("http://ollama:11434/api/tags", "ollama"), ("http://[::1]:11434/", "1"),
    ("https://api.example.com/health", "api.example.com"),
])
def test_default_name_comes_from_the_host(url: str, name: str) -> None:
    """Without name= the host names the check, made safe for ?exclude=."""
    assert HTTPCheck(url).name == name


@pytest.mark.parametrize("url", ["ftp://x/", "127.0.0.1:11434", "http:///nohost"])
def test_http_check_needs_an_http_url(url: str) -> None:
    """A URL the check cannot use fails at construction."""
    with pytest.raises(ValueError, match="http"):
        HTTPCheck(url)


def test_header_injection_in_configured_headers_is_refused() -> None:
    """CR/LF in a header would let configuration smuggle requests; refused."""
    with pytest.raises(ValueError, match="CR or LF"):
        HTTPCheck("http://127.0.0.1/", headers={"X-A": "1\r\nX-B: 2"})


@pytest.mark.parametrize("mode", ["hang", "absent", "failing", "ok"])
def test_ollama_modes_through_the_service(make_service: ServiceFactory, ollama: FakeOllama,
                                          mode: str) -> None:
    """Through the service: hanging -> timed out, absent/failing -> fail, fast -> ready."""
    url = f"http://127.0.0.1:{unused_port()}/api/tags" if mode == "absent" else ollama.tags_url
    if mode in ("hang", "failing"):
        ollama.mode = mode  # type: ignore[assignment]
    service = make_service(HTTPCheck(url, name="ollama"), store_check=False)
    service.respond("GET", "/ready", b"", {})
    wait_until(lambda: "ollama" in service.results)
    response = service.respond("GET", "/api/health/detailed", b"", {})
    assert response is not None
    entry = json.loads(response.body)["checks"]["ollama:responseTime"][0]
    expected = {"hang": ("fail", True), "absent": ("fail", False), "failing": ("fail", False),
                "ok": ("pass", False)}[mode]
    assert (entry["status"], entry["timedOut"]) == expected
    assert response.status == (200 if mode == "ok" else 503)


def test_filesystem_check_writes_reads_and_cleans_up(tmp_path: Path) -> None:
    """Pass on a writable directory, leaving nothing behind; observed value is used percent."""
    result = FilesystemCheck(tmp_path).check()
    assert (result.status, result.observed_unit, list(tmp_path.iterdir())) == (
        "pass", "percent", [])
    assert isinstance(result.observed_value, float)
    assert 0 < result.observed_value <= 100


def test_filesystem_check_fails_below_free_space(tmp_path: Path) -> None:
    """Free space under min_free_bytes / min_free_percent fails, saying how much is free."""
    result = FilesystemCheck(tmp_path, min_free_bytes=1 << 60, min_free_percent=100).check()
    assert result.status == "fail"
    assert "bytes free, below 1152921504606846976" in result.output
    assert "% free, below 100%" \
        in result.output


def test_filesystem_check_fails_naming_a_path_it_cannot_write(tmp_path: Path) -> None:
    """A path that is not a writable directory fails, saying which path and why."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    not_a_directory = FilesystemCheck(blocker).check()
    missing = FilesystemCheck(tmp_path / "missing").check()
    assert (not_a_directory.status, not_a_directory.output) == (
        "fail", f"cannot write to {blocker}: Not a directory")
    assert (missing.status, missing.output, missing.observed_value) == (
        "fail", f"cannot write to {tmp_path / 'missing'}: No such file or directory", None)


def test_filesystem_check_on_a_full_disk_fails_showing_its_utilization(
        full_volume: Path) -> None:
    """A full volume fails with the path and ENOSPC's message, and still observes 100% used:
    the figure a dashboard wants exactly then."""
    result = FilesystemCheck(full_volume, min_free_percent=10).check()
    assert (result.status, result.observed_value, result.observed_unit) == (
        "fail", 100.0, "percent")
    assert result.output == (f"cannot write to {full_volume}: No space left on device; "
                             "0.0% free, below 10%")
    assert sorted(p.name for p in full_volume.iterdir()) == ["filler"]


def test_filesystem_check_on_a_read_only_mount_fails(read_only_view: tuple[Path, Path]
                                                     ) -> None:
    """A volume mounted read-only (root ignores file modes, not a read-only mount) fails with
    EROFS's message and its utilization."""
    _, view = read_only_view
    result = FilesystemCheck(view).check()
    assert (result.status, result.output) == (
        "fail", f"cannot write to {view}: Read-only file system")
    assert isinstance(result.observed_value, float)


def test_database_check_on_sqlite(tmp_path: Path) -> None:
    """SELECT 1 on a SQLite file passes, with the round trip in ms (a name that needs quoting
    in a file: URI included)."""
    path = tmp_path / "app data %41#.db"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE documents (id INTEGER PRIMARY KEY)")
    check = DatabaseCheck(sqlalchemy.URL.create("sqlite", database=str(path)))
    result = check.check()
    assert (check.key, result.status, result.observed_unit) == (
        "sqlite:responseTime", "pass", "ms")


def test_database_check_on_a_missing_sqlite_file_fails_and_creates_nothing(
        tmp_path: Path) -> None:
    """A SQLite database that is not there (a volume that did not mount) fails: connecting to
    the plain path created an empty database and passed."""
    path = tmp_path / "app.db"
    result = DatabaseCheck(f"sqlite:///{path}").check()
    assert (result.status, result.output, path.exists()) == (
        "fail", "OperationalError: unable to open database file", False)


def test_database_check_fails_without_leaking_the_password() -> None:
    """An unreachable PostgreSQL fails fast; the password is in neither output nor repr."""
    check = DatabaseCheck(f"postgresql+psycopg://rag:Sup3rS3cret@127.0.0.1:{unused_port()}/rag",
                          timeout=2.0)
    result = check.check()
    assert result.status == "fail"
    assert result.output.startswith("OperationalError: ")
    assert "Sup3rS3cret" not in result.output + repr(check) + json.dumps(result.output)
    assert check.name == "postgres"


def test_database_check_hides_a_password_given_in_the_query() -> None:
    """libpq also takes ?password= and ?sslpassword=: masked in the repr as the user part's
    password is."""
    check = DatabaseCheck(f"postgresql+psycopg://rag@127.0.0.1:{unused_port()}/rag"
                          "?password=Qu3ryS3cret&sslpassword=K3yS3cret&sslmode=prefer")
    assert repr(check) == (
        f"DatabaseCheck('postgresql+psycopg://rag@127.0.0.1:{check.url.port}/rag"
        "?password=***&sslmode=prefer&sslpassword=***', name='postgres', critical=True)")
    assert "S3cret" not in check.check().output


def test_database_check_without_its_driver_says_what_to_install() -> None:
    """pg8000 is never installed here: the check fails naming the module and the extra."""
    result = DatabaseCheck("postgresql+pg8000://rag:pw@127.0.0.1:9/rag").check()
    assert result.status == "fail"
    assert "No module named 'pg8000'" in result.output
    assert "postgres extra" in result.output
