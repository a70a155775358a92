"""Static types survive decoration: mypy --strict accepts ``typing_check.py`` as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHECKED = Path(__file__).with_name("typing_check.py")


@pytest.mark.slow
def test_decorated_functions_keep_their_static_types(tmp_path: Path) -> None:
    """mypy finds every assert_type true and every wrong call still wrong."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--no-error-summary", "--cache-dir", str(tmp_path / "mypy"), str(CHECKED)],
        capture_output=True, text=True, timeout=300, check=False,
        cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stdout + result.stderr
