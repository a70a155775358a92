"""Bad input: one ``ragtrail: error:`` line on stderr, exit status 2, never a traceback.

These fail before any store is opened; the store-dependent errors are in test_commands.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ragtrail.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["events", "--bogus"], "unrecognized arguments: --bogus (see 'ragtrail events --help')"),
        (["--bogus", "events"], "unrecognized arguments: --bogus (see 'ragtrail --help')"),
        (["events", "--since", "5x"], "argument --since: '5x' is neither a duration"),
        (["events", "--until", "soon"], "argument --until: 'soon' is neither a duration"),
        (["events", "--min-severity", "urgent"], "severity must be one of low, medium"),
        (["events", "--since", "1h", "--until", "2h"], "is not before --until"),
        (["export", "--since", "2024-05-02T00:00:00Z", "--until", "2024-05-01T00:00:00Z"],
         "--since 2024-05-02T00:00:00Z is not before --until 2024-05-01T00:00:00Z"),
        (["spans", "--trace-id", "4bf92f35-77b3"], "'4bf92f35-77b3' is not a trace ID"),
        (["events", "--limit", "0"], "argument --limit: expected a whole number >= 1"),
        (["spans", "--min-duration-ms", "nan"], "argument --min-duration-ms: expected"),
        (["spans", "--type", "x"], "unrecognized arguments: --type x"),
        (["metrics", "--min-severity", "high"], "unrecognized arguments"),
        (["tail", "--interval", "0"], "argument --interval: expected a number > 0"),
        # Beyond what the database or time.sleep() takes: they ended in an OverflowError.
        (["events", "--limit", "99999999999999999999"],
         "argument --limit: expected a whole number <= 9223372036854775807"),
        (["tail", "--limit", "9223372036854775808"],
         "argument --limit: expected a whole number <= 9223372036854775807"),
        (["spans", "--min-duration-ms", "1e300"],
         "argument --min-duration-ms: expected a number of milliseconds from 0 to "),
        (["tail", "--interval", "1e10"],
         "argument --interval: expected a number > 0 and <= 86400; got '1e10'"),
        (["export", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["export", "--kind", "metrics", "--min-severity", "high"],
         "--min-severity does not apply to --kind metrics"),
        (["export", "--kind", "events", "--span-kind", "llm"],
         "--span-kind does not apply to --kind events"),
        (["export", "--kind", "metrics", "--errors-only"],
         "--errors-only does not apply to --kind metrics"),
        (["nosuchcommand"], "argument COMMAND: invalid choice: 'nosuchcommand'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """Each mistake gives exactly one error line naming it, nothing on stdout."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("ragtrail: error: ")
    assert message in err


def test_help_exits_0_and_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` prints usage with every command to stdout and exits 0."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("events", "spans", "metrics", "stats", "tail", "export"):
        assert command in out
    # The exit statuses of docs/cli.md, 141 (| head) included.
    assert "130 interrupted, 141 stdout closed early (| head)" in " ".join(out.split())


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``--version`` prints the package version."""
    from ragtrail import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"ragtrail {__version__}\n"


def test_python_dash_m_reports_bad_flags_without_a_traceback() -> None:
    """``python -m ragtrail`` in a real process: exit 2 and a single stderr line."""
    done = subprocess.run([sys.executable, "-m", "ragtrail", "events", "--since", "yesterday"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        "ragtrail: error: argument --since: 'yesterday' is neither a duration like 30s, 15m, "
        "2h, 7d nor an ISO-8601 time like 2024-05-01T12:00:00Z (see 'ragtrail events --help')"]


def test_command_help_keeps_the_words_of_the_docs(capsys: pytest.CaptureFixture[str]) -> None:
    """``ragtrail spans --help`` says "RAG steps" (not "rag steps") and that --trace-id takes
    a whole traceparent value, as docs/cli.md does."""
    assert main(["spans", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Finished spans (calls, requests, RAG steps), newest first." in out
    assert "--trace-id ID only spans of this trace: 32 hex digits, or a whole traceparent " \
           "value" in out
