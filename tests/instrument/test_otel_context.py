"""ragtrail's direct use of OTel's context variable: the same context as the public API."""

from __future__ import annotations

import contextvars

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

from ragtrail.instrument import _otel_context


def test_attach_is_what_the_otel_api_sees_and_the_other_way_round() -> None:
    marked = otel_context.set_value("ragtrail-test", "ours")
    token = _otel_context.attach(marked)
    try:
        assert otel_context.get_current() is marked
        assert otel_context.get_value("ragtrail-test") == "ours"
    finally:
        _otel_context.detach(token)
    assert otel_context.get_value("ragtrail-test") is None
    theirs = otel_context.set_value("ragtrail-test", "theirs")
    token = otel_context.attach(theirs)
    try:
        assert _otel_context.get_current() is theirs
    finally:
        otel_context.detach(token)


def test_the_direct_path_is_taken_on_the_default_runtime() -> None:
    assert isinstance(otel_context._RUNTIME_CONTEXT, ContextVarsRuntimeContext)
    assert _otel_context._runtime_variable() is not None
    assert _otel_context.get_current != otel_context.get_current


def test_another_runtime_context_falls_back_to_the_public_api(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime chosen with OTEL_PYTHON_CONTEXT (here a subclass) is used through OTel."""

    class OtherRuntime(ContextVarsRuntimeContext):
        pass

    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", OtherRuntime())
    assert _otel_context._runtime_variable() is None
    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", object())
    assert _otel_context._runtime_variable() is None


def test_detaching_a_token_of_another_context_does_nothing() -> None:
    """As OTel's detach(): a token made in another context, or used twice, is no error."""
    span_context = trace.set_span_in_context(trace.INVALID_SPAN, Context())
    token = contextvars.copy_context().run(_otel_context.attach, span_context)
    _otel_context.detach(token)  # made in the copy: nothing to undo here
    assert _otel_context.get_current() is not span_context
    own = _otel_context.attach(span_context)
    _otel_context.detach(own)
    _otel_context.detach(own)  # used already
    assert _otel_context.get_current() is not span_context
