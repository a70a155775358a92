"""JSON has no NaN or infinity (RFC 8259 section 6): such floats are written as null.

The store's orjson encoder keeps them that way, and JavaScript's ``JSON.stringify`` writes them
so; the standard encoder would write ``NaN``, which no strict parser reads.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["finite"]


def finite(value: Any) -> Any:
    """``value`` with every NaN and infinity, at any depth of dicts, lists and tuples, as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value
