"""The current OpenTelemetry context, read and set at the cost of one ``ContextVar`` call.

OTel's ``get_current()``, ``attach()`` and ``detach()`` each reach their ``ContextVar``
through two Python calls; a server span and every ``@monitored`` span make four such calls.
With OTel's default runtime context (``contextvars``, the only one it ships), ragtrail uses
that same ``ContextVar`` directly, so it reads and sets exactly what the OTel API does. With
any other runtime (``OTEL_PYTHON_CONTEXT``), or if OTel's internals ever change shape, the
public functions are used.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

__all__ = ["attach", "detach", "get_current"]


def _runtime_variable() -> ContextVar[Context] | None:
    """The ``ContextVar`` behind OTel's current context, when OTel runs on contextvars."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    variable = getattr(runtime, "_current_context", None)
    return variable if isinstance(variable, ContextVar) else None


def _direct_detach(variable: ContextVar[Context]) -> Callable[[Token[Context]], None]:
    reset = variable.reset

    def detach(token: Token[Context]) -> None:
        """Like OTel's ``detach()``: a token from another context, or used already, is a no-op
        (OTel logs it; ragtrail only detaches where it checked it attached)."""
        try:  # noqa: SIM105 (suppress() builds a context manager per call)
            reset(token)
        except (ValueError, RuntimeError):
            pass

    return detach


_variable = _runtime_variable()
get_current: Callable[[], Context]
attach: Callable[[Context], Token[Context]]
detach: Callable[[Token[Context]], None]
if _variable is not None:
    get_current, attach, detach = _variable.get, _variable.set, _direct_detach(_variable)
else:
    get_current, attach, detach = (
        otel_context.get_current, otel_context.attach, otel_context.detach)
