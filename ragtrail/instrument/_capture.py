"""Which arguments of a call ``@monitored(capture_args=...)`` records, by name.

Binding happens per call, so it is kept cheap: the signature is taken apart once at
decoration time, and a call is mapped to names without ``inspect.Signature.bind``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from ragtrail.instrument._callable_kinds import underlying_function

__all__ = ["ArgumentCapture"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


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
    classmethod), the first parameter is dropped from the signature, unless the callable was
    bound before it was decorated (``monitored(obj.method)``): its signature has none. Under
    ``@classmethod`` on Python 3.13+, which no longer binds what it wraps, wrapt reports no
    instance and ``cls`` arrives as the first argument: a method's leading ``self`` or
    ``cls`` parameter is therefore left out by name too.
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
        receiver = _receiver(target, parameters)
        self._order = tuple(p.name for p in parameters
                            if (wanted is None or p.name in wanted) and p.name != receiver)
        self._for_function = _Binder(parameters, wanted)
        self._for_method = self._for_function if inspect.ismethod(target) \
            else _Binder(parameters[1:], wanted)

    def values(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
               ) -> dict[str, Any]:
        binder = self._for_function if instance is None else self._for_method
        bound = binder.bind(args, kwargs)
        return {name: bound[name] for name in self._order if name in bound}


def _receiver(target: Any, parameters: Sequence[inspect.Parameter]) -> str | None:
    """``self`` or ``cls`` when it is the first parameter of a function defined in a class."""
    if not parameters or parameters[0].kind not in _POSITIONAL or inspect.ismethod(target):
        return None
    scopes = getattr(target, "__qualname__", "").split(".")
    defined_in_class = len(scopes) > 1 and scopes[-2] != "<locals>"
    name = parameters[0].name
    return name if defined_in_class and name in ("self", "cls") else None
