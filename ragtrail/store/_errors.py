"""The exception the store raises to its callers, and how errors are shown redacted."""

from __future__ import annotations

__all__ = ["NewerStoreError", "StoreError", "UnreadableRowError", "describe_error"]

_MAX_ERROR_CHARS = 300


class StoreError(RuntimeError):
    """The store cannot be opened or read; the message is one line, safe to show a user."""


class NewerStoreError(StoreError):
    """A newer ragtrail's store whose compatibility floor is above this version: a writer stops
    writing it rather than retrying (``_floor``)."""


class UnreadableRowError(StoreError):
    """A stored row is not one ragtrail can read: reading again will not help (an outage
    would)."""


def describe_error(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """One redacted line for ``exc``: its type and the driver's message, never SQL or values.

    SQLAlchemy's own message appends the statement and its parameters (``[SQL: ...]``,
    ``[parameters: ...]``), which may hold user data; the driver's message (``exc.orig``) does
    not. Anything in ``secrets`` (the URL's password) is masked in case a driver echoes it.
    """
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()[0] if str(original).strip() else ""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    name = type(original).__name__
    return f"{name}: {text}" if text else name
