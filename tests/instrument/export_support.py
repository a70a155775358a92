"""Helpers shared by the export tests: hand-built span records and a pipeline factory."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from ragtrail import Settings, SpanRecord
from ragtrail.instrument._export import ExportPipeline
from ragtrail.instrument._export_convert import SAMPLED_KEY

__all__ = ["Pipelines", "new_trace", "span_record"]


def new_trace() -> str:
    """A fresh trace ID: tests share receivers and tell their spans apart by it."""
    return secrets.token_hex(16)


def span_record(trace_id: str, name: str, kind: str = "function", *, parent: str | None = None,
                span_id: str | None = None, sampled: bool | None = True,
                **fields: Any) -> SpanRecord:
    """A finished span as ``LiveSpan.end()`` makes it (the sampling flag in the attributes).

    ``sampled=None`` leaves the flag out, as a record from elsewhere would.
    """
    attributes = dict(fields.pop("attributes", {}))
    if sampled is not None:
        attributes[SAMPLED_KEY] = sampled
    return SpanRecord(
        trace_id=trace_id, span_id=span_id or secrets.token_hex(8), name=name, kind=kind,
        start_us=time.time_ns() // 1000, duration_us=fields.pop("duration_us", 1500),
        parent_span_id=parent, attributes=attributes, **fields)


class Pipelines:
    """Builds pipelines from settings keywords (``create=`` for ``create()``'s own keywords)
    and shuts them all down at ``close()``."""

    def __init__(self) -> None:
        self._made: list[ExportPipeline] = []

    def __call__(self, *, create: dict[str, Any] | None = None,
                 **settings: Any) -> ExportPipeline:
        return self._kept(ExportPipeline.create(Settings(**settings), **(create or {})),
                          settings)

    def from_env(self, environ: Mapping[str, str] | None = None,
                 **arguments: Any) -> ExportPipeline:
        """Built as ``configure()`` builds it: ``Settings.from_env`` over ``environ`` (None:
        ``os.environ``) with ``arguments`` winning."""
        return self._kept(ExportPipeline.create(Settings.from_env(environ, **arguments)),
                          {**(environ or {}), **arguments})

    def _kept(self, pipeline: ExportPipeline | None, given: Mapping[str, Any]) -> ExportPipeline:
        if pipeline is None:
            raise AssertionError(f"no pipeline for {dict(given)}")
        self._made.append(pipeline)
        return pipeline

    def close(self) -> None:
        for pipeline in self._made:
            pipeline.shutdown(2.0)
