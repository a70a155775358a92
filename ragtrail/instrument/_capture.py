"""Opt-in capture of arguments and results: named, redacted, and bounded in size.

Values become OpenInference's ``input.value``/``output.value`` (JSON text, with
``input.mime_type``/``output.mime_type``). Every value passes the redactor before it is
serialised, and each value's JSON is cut to ``capture_max_bytes`` (the cut text is kept as a
JSON string, so the attribute stays valid JSON).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ragtrail.instrument._callable_kinds import underlying_function

__all__ = ["ArgumentCapture", "bounded_json", "jsonable"]

_TRUNCATED = "...[truncated]"
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_MISSING: Any = object()


class _Binder:
    """Maps a call's ``args``/``kwargs`` to parameter names, with defaults applied.

    Equivalent to ``Signature.bind(...).apply_defaults()`` for calls the function accepts,
    at a fraction of its cost; a call the function rejects raises in the function anyway.
    """

    __slots__ = ("_defaults", "_keywords", "_positional", "_var_keyword", "_var_positional")

    def __init__(self, parameters: Sequence[inspect.Parameter], wanted: frozenset[str] | None):
        self._positional = tuple(p.name for p in parameters if p.kind in _POSITIONAL)
        self._keywords = frozenset(p.name for p in parameters if p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
        self._var_positional = next(
            (p.name for p in parameters if p.kind is inspect.Parameter.VAR_POSITIONAL), None)
        self._var_keyword = next(
            (p.name for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD), None)
        self._defaults = tuple(
            (p.name, p.default) for p in parameters
            if p.default is not inspect.Parameter.empty and (wanted is None or p.name in wanted))

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        values = dict(zip(self._positional, args, strict=False))  # fewer args: defaults
        if self._var_positional is not None:
            values[self._var_positional] = args[len(self._positional):]
        extra: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in self._keywords:
                values[key] = value
            else:
                extra[key] = value
        if self._var_keyword is not None:
            values[self._var_keyword] = extra
        for name, default in self._defaults:
            if name not in values:
                values[name] = default
        return values


class ArgumentCapture:
    """Which arguments of one decorated callable to capture, worked out at decoration time.

    ``self``/``cls`` are never captured: when wrapt reports an instance (a method or a
    classmethod), the first parameter is dropped from the signature.
    """

    __slots__ = ("_for_function", "_for_method", "_order")

    def __init__(self, func: Any, names: bool | Sequence[str]) -> None:
        target = underlying_function(func) if isinstance(func, (staticmethod, classmethod)) \
            else func
        parameters = list(inspect.signature(target).parameters.values())
        known = {p.name for p in parameters}
        wanted: frozenset[str] | None = None
        if not isinstance(names, bool):
            wanted = frozenset(names)
            unknown = sorted(wanted - known)
            if unknown:
                raise ValueError(
                    f"capture_args names {', '.join(unknown)} are not parameters of {func!r}")
        self._order = tuple(p.name for p in parameters if wanted is None or p.name in wanted)
        self._for_function = _Binder(parameters, wanted)
        self._for_method = _Binder(parameters[1:], wanted)

    def values(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
               ) -> dict[str, Any]:
        binder = self._for_function if instance is None else self._for_method
        bound = binder.bind(args, kwargs)
        return {name: bound[name] for name in self._order if name in bound}


def jsonable(value: Any, depth: int = 0) -> Any:
    """Turn dataclasses, pydantic-style models and objects with public fields into JSON types.

    Done before redaction so a field named ``password`` inside a model is seen as a key.
    """
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if depth > 8:
        return f"<{type(value).__qualname__}>"
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name), depth + 1)
                for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(dump):
        try:
            return jsonable(dump(), depth + 1)
        except Exception:
            return f"<{type(value).__qualname__}>"
    fields = getattr(value, "__dict__", None)
    if isinstance(fields, dict):
        return {"type": type(value).__qualname__, **{
            k: jsonable(v, depth + 1) for k, v in fields.items() if not k.startswith("_")}}
    return f"<{type(value).__qualname__}>"


def bounded_json(value: Any, max_bytes: int) -> str:
    """``value`` as compact JSON; past ``max_bytes`` (UTF-8), the cut text as a JSON string."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    if len(text) <= max_bytes and (text.isascii() or len(text.encode()) <= max_bytes):
        return text
    cut = text.encode()[:max(0, max_bytes - len(_TRUNCATED))].decode("utf-8", "ignore")
    return json.dumps(cut + _TRUNCATED, ensure_ascii=False)
