"""The public API in ``ragtrail/__init__.py``: every name resolves, lazily, to its home's."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ragtrail

INIT = Path(ragtrail.__file__)


def test_every_public_name_resolves_to_the_object_of_its_home_module() -> None:
    for name in ragtrail.__all__:
        value = getattr(ragtrail, name)
        home = ragtrail._HOME.get(name)
        if home is not None:
            assert value is getattr(importlib.import_module(home), name), name
    assert set(ragtrail.__all__) <= set(dir(ragtrail))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'monitred'"):
        ragtrail.monitred  # type: ignore[attr-defined]  # noqa: B018


def test_subpackages_are_reachable_as_attributes() -> None:
    assert ragtrail.store.AuditStore is ragtrail.AuditStore
    assert ragtrail.health.HTTPCheck is ragtrail.HTTPCheck
    assert callable(ragtrail.testing.capture)


def test_type_checkers_see_the_same_names_from_the_same_modules() -> None:
    """The imports under ``if TYPE_CHECKING`` and the lazy table must not drift apart."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    (block,) = [node for node in tree.body if isinstance(node, ast.If)
                and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"]
    seen = {alias.name: node.module for node in block.body
            if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert seen == ragtrail._HOME


def test_importing_ragtrail_leaves_the_heavy_parts_unloaded() -> None:
    """What makes the ``ragtrail`` command start fast: until a name is used, neither the
    OpenTelemetry SDK, Starlette, SQLAlchemy nor requests is imported."""
    heavy = ["opentelemetry.sdk", "starlette", "sqlalchemy", "requests", "psutil"]
    code = ("import json, sys, ragtrail; "
            f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                       capture_output=True, text=True, timeout=60).stdout)
    assert loaded == []
