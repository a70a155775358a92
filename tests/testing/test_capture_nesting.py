"""Two captures open at once hand the app its own monitor back, whatever order they end in."""

from __future__ import annotations

from pathlib import Path

import ragtrail
from ragtrail.testing import capture


def test_captures_that_end_out_of_order_give_the_app_its_monitor_back(tmp_path: Path) -> None:
    """Two captures open at once (two threads of one test, or a fixture's capture and a
    test's) that end in the order they began: the first leaves the second current (it is no
    longer its own), the second then puts back the first one's monitor, already shut down.
    The app's monitor is lost for the rest of the process and everything runs unrecorded."""
    app_monitor = ragtrail.configure(store_url=f"sqlite:///{tmp_path / 'app.db'}")
    first, second = capture(), capture()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    assert ragtrail.get_monitor() is app_monitor
    assert ragtrail.get_monitor().enabled
