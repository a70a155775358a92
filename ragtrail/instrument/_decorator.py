"""``@monitored``: a span for every call of a RAG pipeline step, at a cost nobody notices.

All the thinking happens here, once, at decoration time: the calling convention, the span
name, the static attributes, what to capture. The per-call wrappers (``_call_wrappers``) only
act on that plan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, overload

from ragtrail.instrument import _monitor
from ragtrail.instrument._call_plan import CallPlan
from ragtrail.instrument._call_wrappers import wrapper_for
from ragtrail.instrument._callable_kinds import callable_kind, display_name
from ragtrail.instrument._capture import ArgumentCapture
from ragtrail.instrument._rag_attributes import SpanKindName, kind_attributes, result_extractor
from ragtrail.instrument._wrappers import MonitoredFunction

__all__ = ["monitored"]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def monitored(func: F, /) -> F: ...


@overload
def monitored(
    func: None = None,
    /,
    *,
    name: str | None = None,
    kind: SpanKindName = "function",
    capture_args: bool | Sequence[str] = False,
    capture_result: bool = False,
    slow_ms: float | None = None,
    record_errors: bool = False,
    attributes: Mapping[str, Any] | None = None,
    enabled: bool = True,
) -> Callable[[F], F]: ...


def monitored(
    func: Any = None,
    /,
    *,
    name: str | None = None,
    kind: SpanKindName = "function",
    capture_args: bool | Sequence[str] = False,
    capture_result: bool = False,
    slow_ms: float | None = None,
    record_errors: bool = False,
    attributes: Mapping[str, Any] | None = None,
    enabled: bool = True,
) -> Any:
    """Record a span for each call of the decorated function, method or callable.

    Works on sync and async functions, generators and async generators (the span covers the
    whole iteration), methods, classmethods, staticmethods and callable objects. The
    function's signature, name, docstring and type are preserved. See docs/decorator.md.

    - ``kind``: the RAG step (``chain``, ``retriever``, ``embedding``, ``reranker``, ``llm``,
      ``tool``, ``function``); sets ``openinference.span.kind`` and reads RAG attributes
      (documents, token usage, vector sizes) off the result.
    - ``capture_args``: True, or the names of the arguments to record (``self``/``cls``
      never); ``capture_result``: record the return value. Always redacted and size-bounded.
    - ``slow_ms``: a slower call records a ``slow_call`` event (default: the
      ``slow_ms`` setting). ``record_errors``: an exception also records a
      ``function_error`` security event.
    - ``enabled=False`` (or ``RAGTRAIL_ENABLED=false`` at decoration time) returns the
      function itself: zero cost.

    >>> @monitored(kind="retriever", capture_args=["query"])
    ... def search(query: str, top_k: int = 5) -> list[dict[str, object]]:
    ...     return []
    """
    _validate(name, capture_args, slow_ms, attributes)
    static = kind_attributes(kind)  # validates kind
    if attributes:
        static.update(attributes)

    def decorate(target: Any) -> Any:
        if not (callable(target) or isinstance(target, classmethod)):
            # A property (or cached_property) is no call: wrapped, it would record nothing.
            raise TypeError(f"@monitored wraps functions, methods and callable objects, not a "
                            f"{type(target).__name__}; put @property above @monitored")
        if not enabled or not _monitor.decorators_enabled():
            return target
        qualname, module = display_name(target)
        plan = CallPlan(
            name=name or qualname,
            kind=kind,
            attributes={"code.function.name": f"{module}.{qualname}" if module else qualname,
                        **static},
            capture=ArgumentCapture(target, capture_args) if capture_args else None,
            capture_result=capture_result,
            extractor=result_extractor(kind),
            slow_ms=slow_ms,
            record_errors=record_errors,
        )
        wrapper = wrapper_for(callable_kind(target).value, plan, qualname)
        return MonitoredFunction(target, wrapper)

    if func is None:
        return decorate
    return decorate(func)


def _validate(name: str | None, capture_args: bool | Sequence[str], slow_ms: float | None,
              attributes: Mapping[str, Any] | None) -> None:
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"name must be a non-empty string; got {name!r}")
    if isinstance(capture_args, str) or not (
            isinstance(capture_args, bool)
            or (isinstance(capture_args, Sequence)
                and all(isinstance(n, str) for n in capture_args))):
        raise ValueError(
            f"capture_args must be True/False or a list of argument names; got {capture_args!r}")
    if slow_ms is not None and (isinstance(slow_ms, bool) or not isinstance(slow_ms, (int, float))
                                or not slow_ms >= 0):
        raise ValueError(f"slow_ms must be a number of milliseconds >= 0; got {slow_ms!r}")
    if attributes is not None and not all(isinstance(k, str) for k in attributes):
        raise ValueError("attributes must map strings to attribute values")
