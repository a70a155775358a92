"""Every ```python block in README.md and docs/*.md runs as written (issue 5: "every code
example in the docs is executed by the test suite").

A block runs in a fresh namespace in an empty directory (see ``sandbox``). A block made of
``>>>`` lines is a doctest and its outputs must match. A block that defines ``app`` must leave an
ASGI or WSGI application there: servers are not started, the object a server would be given is
checked. A block that cannot run here is marked by ``<!-- not-run: reason -->`` on the line
before it; those are counted, must give a reason, and still have to compile.

What a block says it prints is checked too: after a top-level ``print(...)`` line, a comment
line starting with ``# [``, ``# (`` or ``# '`` is the printed line, and a trailing comment
starting with a number or a quoted string (``print(status)  # 200: ...``) is the printed value.
"""

from __future__ import annotations

import doctest
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._markdown import PAGES, Block, blocks

PYTHON = [block for page in PAGES for block in blocks(page) if block.lang in {"python", "py"}]
RUN = [block for block in PYTHON if block.not_run is None]
NOT_RUN = [block for block in PYTHON if block.not_run is not None]

MAX_NOT_RUN = 3
"""Blocks exempt from running: each needs something the test machine cannot have (today: the
seed system's own modules, in the migration guide). Raise it only with a reason in the marker."""


DATA = [block for page in PAGES for block in blocks(page) if block.lang in {"json", "yaml"}]


def _is_doctest(block: Block) -> bool:
    return block.code.lstrip().startswith(">>>")


def _run_doctest(block: Block) -> None:
    test = doctest.DocTestParser().get_doctest(block.code, {}, block.where, block.where,
                                                block.line - 1)
    out: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    result = runner.run(test, out=out.append)
    assert result.attempted > 0
    assert result.failed == 0, "".join(out)


_TRAILING = re.compile(r"""^print\(.*\)\s+#\s+(?P<value>\d[\w.]*|"[^"]*"|'[^']*')""")
_OUTPUT_LINE = re.compile(r"^#\s(?P<line>[\[('].*)$")


def _expected_output(code: str) -> list[str]:
    """The lines the block's comments say its top-level prints write, in order."""
    expected: list[str] = []
    after_print = False
    for line in code.splitlines():
        output = _OUTPUT_LINE.match(line)
        if after_print and output:
            expected.append(output["line"].strip())
            continue
        after_print = line.startswith("print(")
        trailing = _TRAILING.match(line)
        if trailing:
            expected.append(trailing["value"].strip("\"'"))
    return expected


def _is_asgi(app: Any) -> bool:
    call = app if inspect.isfunction(app) else getattr(app, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(call) and \
        len(inspect.signature(call).parameters) == 3


def _is_wsgi(app: Any) -> bool:
    if not callable(app):
        return False
    try:
        parameters = inspect.signature(app).parameters
    except (TypeError, ValueError):
        return False
    return len(parameters) == 2


@pytest.mark.parametrize("block", RUN, ids=[block.where for block in RUN])
def test_python_block_runs(block: Block, sandbox: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """The snippet runs without an error and prints what it says (doctests: outputs match)."""
    if _is_doctest(block):
        _run_doctest(block)
        return
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    # dont_inherit: this module's ``from __future__ import annotations`` must not hide an
    # undefined name in a snippet's annotations.
    code = compile(block.code, block.where, "exec", dont_inherit=True)
    exec(code, namespace)  # our own docs
    printed = [line.strip() for line in capsys.readouterr().out.splitlines()]
    expected = _expected_output(block.code)
    remaining = iter(printed)  # each expected line, in order, among the printed ones
    missing = [line for line in expected if line not in remaining]
    assert missing == [], f"{block.where}: printed {printed}"
    if "app" in namespace:
        app = namespace["app"]
        # Flask keeps its WSGI callable at app.wsgi_app once wrapped; both are WSGI apps.
        assert _is_asgi(app) or _is_wsgi(app) or _is_wsgi(getattr(app, "wsgi_app", None)), \
            f"{block.where}: `app` is neither an ASGI nor a WSGI application: {app!r}"


def test_not_run_blocks_are_few_and_explained() -> None:
    """Few blocks are exempt, and each marker says why."""
    assert len(NOT_RUN) <= MAX_NOT_RUN, [block.where for block in NOT_RUN]
    for block in NOT_RUN:
        reason = block.not_run or ""
        assert len(reason.split()) >= 3, f"{block.where}: a not-run marker needs a reason"


@pytest.mark.parametrize("block", NOT_RUN, ids=[block.where for block in NOT_RUN])
def test_not_run_block_compiles(block: Block) -> None:
    """Even a block that is not run is valid Python."""
    compile(block.code, block.where, "exec", dont_inherit=True)


@pytest.mark.parametrize("block", DATA, ids=[block.where for block in DATA])
def test_data_block_parses(block: Block) -> None:
    """JSON and YAML examples (health responses, manifests) are well-formed."""
    if block.lang == "json":
        json.loads(block.code)
    else:
        assert yaml.safe_load(block.code) is not None


def test_expected_output_is_read_from_comments() -> None:
    """Both comment forms are understood, and other comments are not taken for output."""
    code = ('print(status)  # 200: fine\nprint(x)  # newest first\n'
            "# ['a', 'b']\nx = 1\n# ['not output']\nprint(name)  # \"ok\"\n")
    assert _expected_output(code) == ["200", "['a', 'b']", "ok"]


def test_every_page_has_been_read() -> None:
    """The extraction sees the pages and their Python blocks (a broken parser finds none)."""
    assert len(PAGES) >= 10
    assert len(PYTHON) >= 20
