"""The ``captrail`` fixture, registered with pytest when ragtrail is installed.

Imports nothing of ragtrail until a test asks for the fixture, so a test run that never uses
it pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ragtrail.testing import Trail


@pytest.fixture
def captrail() -> Iterator[Trail]:
    """What ragtrail records during the test (``ragtrail.testing.capture()`` around it)."""
    from ragtrail.testing import capture

    with capture() as trail:
        yield trail
