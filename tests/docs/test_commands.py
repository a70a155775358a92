"""Every ``ragtrail ...`` command the docs show parses with the real command-line parser, and
every error the docs show is the error ragtrail prints.

Commands come from code blocks (a line starting with ``ragtrail``, after an optional ``$``
prompt, ``VAR=value`` assignments or a ``.venv/bin/`` path; in a block with ``$`` prompts only
the prompted lines) and from inline code in the prose.
Synopses (``[--flag VALUE]``) and inline spans with placeholders (``COMMAND``, ``URL``) are
usage patterns, not commands, and are left out. A command followed in its block by a
``ragtrail: error:`` line is documented as refused: it is run, in a directory holding the files
the docs mention, and must print that line (``...`` matching anything) and exit with status 2.
"""

from __future__ import annotations

import re
import shlex
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from ragtrail.cli._args import CommandError
from ragtrail.cli._main import build_parser, main

from ._markdown import PAGES, ROOT, blocks, inline_code


@dataclass(frozen=True)
class Command:
    where: str
    argv: tuple[str, ...]
    error: str | None  # the documented error line, for a command shown as refused


_PREFIX = re.compile(r"^(?:\$\s+)?(?:[A-Z][A-Z0-9_]*=\S*\s+)*(?:\S*/)?(?=ragtrail\s)")
_PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9_]{1,}\b")
_SYNOPSIS = re.compile(r"[\[(]-|\s\[[A-Za-z]")  # [--flag X], (--a | --b), [filters]
# Commands chained or piped on one line, or run by another (``kubectl exec POD -- ragtrail``).
_SEGMENT = re.compile(r"\s(?:&&|;|\||--(?=\sragtrail\s))\s")
_SHELL_END = re.compile(r"\s(?:>|#)")  # a redirection, a comment


def _argv(line: str) -> tuple[str, ...] | None:
    """The arguments of the ``ragtrail`` command on a shell line, or None if it has none."""
    if _SYNOPSIS.search(line):
        return None
    for segment in _SEGMENT.split(line.strip()):
        match = _PREFIX.match(segment)
        if match is None:
            continue
        command = _SHELL_END.split(segment[match.end():], maxsplit=1)[0]
        words = shlex.split(command)
        return tuple(words[1:])
    return None


def _commands() -> list[Command]:
    found: list[Command] = []
    for page in PAGES:
        for block in blocks(page):
            if block.lang in {"python", "py", "json", "yaml"}:
                continue
            lines = block.code.splitlines()
            # In a transcript, the commands are the prompted lines; the rest is output.
            prompted = any(line.startswith("$ ") for line in lines)
            for offset, line in enumerate(lines):
                if prompted and not line.startswith("$ "):
                    continue
                argv = _argv(line)
                if argv is None:
                    continue
                following = lines[offset + 1] if offset + 1 < len(lines) else ""
                error = following if following.startswith("ragtrail: error:") else None
                found.append(Command(f"{block.where.rsplit(':', 1)[0]}:{block.line + offset}",
                                     argv, error))
        for number, span in inline_code(page):
            code = span.replace("\\|", "|")  # a pipe escaped inside a table cell
            if code.startswith("ragtrail ") and not _PLACEHOLDER.search(code) \
                    and "..." not in code:
                argv = _argv(code)
                if argv is not None:
                    found.append(Command(f"{page.relative_to(ROOT)}:{number}", argv, None))
    return found


COMMANDS = _commands()
PARSED = [command for command in COMMANDS if command.error is None]
REFUSED = [command for command in COMMANDS if command.error is not None]


@pytest.mark.parametrize("command", PARSED, ids=[c.where for c in PARSED])
def test_documented_command_parses(command: Command, capsys: pytest.CaptureFixture[str]) -> None:
    """The real parser accepts the command (``--help``/``--version`` exit 0)."""
    parser = build_parser()
    try:
        parser.parse_args(list(command.argv))
    except CommandError as exc:
        pytest.fail(f"{command.where}: ragtrail {shlex.join(command.argv)}: {exc}")
    except SystemExit as exc:
        status = exc.code
    else:
        status = 0
    capsys.readouterr()
    assert status in (0, None), f"{command.where}: exit {status}"


@pytest.fixture
def incident_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The files the documented errors talk about: a text file and a non-ragtrail SQLite db."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAGTRAIL_STORE_URL", raising=False)
    (tmp_path / "notes.txt").write_text("not a database, just notes\n" * 100)
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    conn.close()
    return tmp_path


@pytest.mark.parametrize("command", REFUSED, ids=[c.where for c in REFUSED])
def test_documented_error_is_the_real_one(command: Command, incident_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A command the docs show as refused exits 2 with exactly the documented line."""
    assert command.error is not None
    status = main(list(command.argv))
    err = capsys.readouterr().err.strip()
    pattern = ".*".join(re.escape(part) for part in command.error.split("..."))
    assert status == 2
    assert re.fullmatch(pattern, err), f"{command.where}:\n  docs: {command.error}\n  real: {err}"


def test_commands_were_found() -> None:
    """The extraction finds the docs' commands, refused ones included."""
    subcommands = {command.argv[0] for command in COMMANDS if command.argv}
    assert {"events", "spans", "stats", "export", "tail", "scan", "quarantine"} <= subcommands
    assert len(REFUSED) >= 5
