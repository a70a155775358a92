"""Testing an application that uses ragtrail: ``capture()`` and the ``captrail`` fixture.

Loaded on first use, so pytest's loading of the fixture's plugin imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragtrail.testing._capture import Trail, capture

__all__ = ["Trail", "capture"]

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name not in __all__:
            raise AttributeError(f"module 'ragtrail.testing' has no attribute {name!r}")
        from ragtrail.testing import _capture

        value = getattr(_capture, name)
        globals()[name] = value
        return value
