"""Checking one setting's value against its declaration, and the error that names the setting.

A field's metadata (``_settings._setting``) holds its variables, its parser and its check; the
Settings object and the reading of the environment both check values here, so an argument and a
variable are refused with the same words.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ragtrail._records import Severity
from ragtrail._setting_values import TYPES, Check, parse_optional_str

__all__ = ["ConfigurationError", "require", "shown", "validated"]


class ConfigurationError(ValueError):
    """A setting has a value ragtrail cannot use; the message names the setting and the choices."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


def validated(f: dataclasses.Field[Any], value: Any) -> Any:
    """``value`` in the setting's own type, or ValueError saying what the setting accepts."""
    kind = str(f.type)
    optional = kind.endswith(" | None")
    kind = kind.removesuffix(" | None")
    if value is None and optional:
        return None
    if kind == "Severity":
        return Severity.parse(value)
    accepts, accepted = TYPES[kind]
    if not accepts(value):
        raise ValueError(f"expected {accepted}")
    if kind == "float":
        value = float(value)
    elif kind.startswith("tuple"):
        value = tuple(value)
    elif kind == "str" and optional:
        # As from the environment: a blank api_token="" or endpoint means unset, never an
        # empty token that some checks read as set and others not.
        value = parse_optional_str(value)
    check: Check | None = f.metadata["check"]
    if value is not None and check is not None and not check[0](value):
        raise ValueError(f"expected {check[1]}")
    return value


def shown(f: dataclasses.Field[Any], value: Any) -> Any:
    """A value as messages show it: a secret hidden, long text shortened."""
    if not f.repr:
        return "[REDACTED]"
    if isinstance(value, str) and len(value) > 64:
        return value[:61] + "..."
    return value


def require(name: str, value: Any, ok: bool, accepted: str) -> None:
    if not ok:
        raise ConfigurationError(f"setting {name}={value!r} is not valid; expected {accepted}",
                                 setting=name)
