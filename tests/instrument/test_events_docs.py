"""docs/security-events.md and docs/redaction.md stay true to the code."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

from ragtrail._records import Severity
from ragtrail.instrument import _event_types
from ragtrail.instrument._event_types import DEFAULT_SEVERITY

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROW = re.compile(r"^\| `([a-z_]+)` \| (low|medium|high|critical)\b", re.MULTILINE)


def test_every_emitted_type_is_documented_with_its_default_severity() -> None:
    """The reference table lists exactly the vocabulary, each with its default severity."""
    documented = {name: Severity.parse(level)
                  for name, level in ROW.findall((DOCS / "security-events.md").read_text())}
    assert documented == DEFAULT_SEVERITY


def test_every_constant_is_in_the_severity_table() -> None:
    """No event type constant is missing a default severity."""
    constants = {value for name, value in vars(_event_types).items()
                 if name.isupper() and isinstance(value, str)}
    assert constants == set(DEFAULT_SEVERITY)


def test_redaction_guide_examples_run() -> None:
    """The examples in docs/redaction.md produce what the page says."""
    result = doctest.testfile(str(DOCS / "redaction.md"), module_relative=False)
    assert (result.failed, result.attempted > 0) == (0, True)
