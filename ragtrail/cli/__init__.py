"""The ``ragtrail`` command: reads an audit store as tables or JSON (see docs/cli.md)."""

from ragtrail.cli._main import main

__all__ = ["main"]
