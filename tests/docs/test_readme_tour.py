"""The README's 30-second tour does what it says: the app it builds answers, records the
request's spans under the client's correlation ID, records the path-traversal probe as a high
event, and the ``ragtrail`` commands it shows print them.

The app runs in-process (httpx's ASGI transport, and a raw ASGI call for the path a client
would normalise) instead of under uvicorn; the middleware sees the same ASGI messages.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

import ragtrail
from ragtrail.cli._main import main

from ._markdown import ROOT, blocks
from .test_commands import _argv

README = ROOT / "README.md"


def _tour() -> tuple[str, list[tuple[str, ...]]]:
    """The tour's Python block and the argv of each ``ragtrail`` command shown after it."""
    found = blocks(README)
    code = next(b.code for b in found if b.lang == "python")
    commands = [argv for b in found if b.lang == "sh" and "ragtrail spans" in b.code
                for line in b.code.splitlines() if (argv := _argv(line)) is not None]
    return code, commands


async def _raw_get(app: Any, raw_path: bytes) -> int:
    """GET a path exactly as sent (``curl --path-as-is``): HTTP clients normalise ``..``."""
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": raw_path.decode("latin-1"),
             "raw_path": raw_path, "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8000")], "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8000)}
    await app(scope, receive, send)
    return status


def test_readme_tour(sandbox: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Requests as in the README, then its commands show the spans and the probe."""
    code, commands = _tour()
    namespace: dict[str, Any] = {"__name__": "app"}
    exec(compile(code, "README.md", "exec", dont_inherit=True), namespace)
    app = namespace["app"]

    async def visit() -> tuple[httpx.Response, httpx.Response, int]:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport,
                                     base_url="http://127.0.0.1:8000") as client:
            answer = await client.get("/ask", params={"q": "refunds"},
                                      headers={"X-Request-ID": "tour-0000001"})
            ready = await client.get("/ready")
        return answer, ready, await _raw_get(app, b"/../../etc/passwd")

    answer, ready, probe = asyncio.run(visit())
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "tour-0000001"
    assert [d["id"] for d in answer.json()["documents"]] == ["faq-7", "faq-2"]
    assert ready.status_code == 200
    assert probe == 404
    assert ragtrail.get_monitor().store.flush(timeout=10)
    capsys.readouterr()

    assert [argv[0] for argv in commands] == ["spans", "events", "stats"]
    outputs = {}
    for argv in commands:
        assert main(list(argv)) == 0, argv
        outputs[argv[0]] = capsys.readouterr().out
    spans = outputs["spans"].splitlines()[1:]
    assert len(spans) == 3
    assert {line.split()[4] for line in spans} == {"GET", "answer", "retrieve"}  # GET /ask
    assert all("tour-0000001" in line for line in spans)
    assert "malicious_path_traversal" in outputs["events"]
    assert "Events by severity" in outputs["stats"]
