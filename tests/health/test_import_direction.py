"""docs/architecture.md: health imports instrument and store, never the middleware (which
imports health), so neither package can pull the other into an import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import ragtrail.health

FORBIDDEN = ("ragtrail.middleware", "ragtrail.security", "ragtrail.cli")


def test_health_modules_never_import_the_middleware_at_module_level() -> None:
    """No import statement at the top level of a health module names a package above it."""
    package = Path(ragtrail.health.__file__).parent
    offenders = []
    for module in sorted(package.glob("*.py")):
        for node in ast.parse(module.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            offenders += [f"{module.name}:{node.lineno} {name}" for name in names
                          if name.startswith(FORBIDDEN)]
    assert offenders == []
