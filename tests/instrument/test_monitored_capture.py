"""Opt-in capture of arguments and results: by name, with defaults, redacted, bounded."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import pytest
from callable_kinds import BUILDERS, nothing
from instrument_support import only_span, stored_spans
from opentelemetry import trace

from ragtrail.instrument import Monitor, monitored

# Canary secrets: if one of these strings is ever found in the database file, redaction failed.
API_KEY = "sk-live9f8e7d6c5b4a39281706f5e4d3c2b1a0"
EMAIL = "ana.canary@example.org"


def test_capture_args_records_named_arguments_with_defaults(monitor: Monitor) -> None:
    """Positional and keyword arguments by name, defaults filled in."""
    @monitored(name="search", capture_args=True)
    def search(query: str, top_k: int = 5, *, index: str = "faq") -> None:
        pass

    search("refund policy", index="manuals")
    span = only_span(monitor, "search")
    assert span.attributes["input.value"] == {
        "query": "refund policy", "top_k": 5, "index": "manuals"}
    assert span.attributes["input.mime_type"] == "application/json"


def test_capture_args_list_records_only_those_names(monitor: Monitor) -> None:
    """A list of names captures those arguments and nothing else."""
    @monitored(name="search", capture_args=["query"])
    def search(query: str, user_token: str, top_k: int = 5) -> None:
        pass

    search("refund policy", "t0k3n")
    assert only_span(monitor, "search").attributes["input.value"] == {"query": "refund policy"}


def test_varargs_and_kwargs_are_captured_under_their_names(monitor: Monitor) -> None:
    """``*args`` and ``**kwargs`` appear as a list and a mapping."""
    @monitored(name="embed", capture_args=True)
    def embed(model: str, *texts: str, **options: Any) -> None:
        pass

    embed("small", "a", "b", normalize=True)
    assert only_span(monitor, "embed").attributes["input.value"] == {
        "model": "small", "texts": ["a", "b"], "options": {"normalize": True}}


@pytest.mark.parametrize("kind", ["method", "async_method", "classmethod", "staticmethod",
                                  "callable_object", "generator", "async_generator"])
def test_self_and_cls_are_never_captured(kind: str, monitor: Monitor) -> None:
    """For methods, classmethods and callable objects only the real arguments are captured."""
    _, run = BUILDERS[kind](nothing, capture_args=True)
    run()
    assert only_span(monitor, "step").attributes["input.value"] == {"x": 21}


def test_only_a_methods_receiver_is_left_out_by_name(monitor: Monitor) -> None:
    """A leading ``self``/``cls`` is skipped by name only in functions defined in a class
    (Python 3.13's ``@classmethod`` hands ``cls`` over as an argument); anywhere else a
    parameter called ``cls`` is an argument like any other."""
    @monitored(name="make", capture_args=True)
    def make(cls: type, size: int) -> None:
        pass

    class Factory:
        @monitored(name="build", capture_args=True)
        def build(self: Any, size: int) -> None:
            pass

    make(int, 3)
    Factory.__dict__["build"](Factory(), 4)  # unbound, as 3.13's classmethod calls it
    assert only_span(monitor, "make").attributes["input.value"] == {
        "cls": "<class 'int'>", "size": 3}
    assert only_span(monitor, "build").attributes["input.value"] == {"size": 4}


def test_methods_bound_before_decoration_keep_their_argument_names(monitor: Monitor) -> None:
    """``monitored(obj.method)``: the bound method's signature has no ``self`` to skip, so the
    names must not shift (a shift once stored a password under the next parameter's name)."""
    class Auth:
        def login(self, password: str, user: str) -> None:
            pass

        @classmethod
        def build(cls, path: str, fast: bool = True) -> None:
            pass

    auth = Auth()
    monitored(name="login", capture_args=True)(auth.login)(API_KEY, "ana")
    monitored(name="build", capture_args=["path"])(Auth.build)("cfg.toml")
    assert only_span(monitor, "login").attributes["input.value"] == {
        "password": "[REDACTED]", "user": "ana"}
    assert only_span(monitor, "build").attributes["input.value"] == {"path": "cfg.toml"}


def test_capture_result_records_the_return_value(monitor: Monitor) -> None:
    """``capture_result=True``: the result, structured, with a JSON mime type."""
    @monitored(name="rank", capture_result=True)
    def rank() -> list[dict[str, Any]]:
        return [{"id": "d1", "score": 0.5}]

    rank()
    span = only_span(monitor, "rank")
    assert span.attributes["output.value"] == [{"id": "d1", "score": 0.5}]
    assert span.attributes["output.mime_type"] == "application/json"


def test_text_result_is_plain_text(monitor: Monitor) -> None:
    """A string result is recorded as text/plain."""
    @monitored(name="generate", capture_result=True)
    def generate() -> str:
        return "Refunds take 14 days."

    generate()
    span = only_span(monitor, "generate")
    assert (span.attributes["output.value"], span.attributes["output.mime_type"]) == (
        "Refunds take 14 days.", "text/plain")


def test_nothing_is_captured_by_default(monitor: Monitor) -> None:
    """Without the options no argument or result is recorded."""
    @monitored(name="search")
    def search(query: str) -> str:
        return query

    search("private question")
    attributes = only_span(monitor, "search").attributes
    assert not {"input.value", "output.value"} & set(attributes)


def test_objects_are_captured_by_their_public_fields(monitor: Monitor) -> None:
    """Dataclasses and plain objects become mappings of their public fields."""
    @dataclass
    class Document:
        id: str
        content: str

    @monitored(name="index", capture_args=True)
    def index(document: Document) -> None:
        pass

    index(Document("d1", "text"))
    assert only_span(monitor, "index").attributes["input.value"] == {
        "document": {"id": "d1", "content": "text"}}


def test_weak_names_hide_random_values_as_mapping_keys_do(monitor: Monitor) -> None:
    """An argument or attribute named like ``signing_key`` or ``webhook.signature`` hides a
    random-looking value, as the same name does as a dict key; a readable one stays."""
    random_value = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"

    @monitored(name="verify", capture_args=True)
    def verify(body: str, signing_key: str, cache_key: str) -> None:
        trace.get_current_span().set_attribute("webhook.signature", random_value)
        trace.get_current_span().set_attribute("webhook.hmac", "sha256")

    verify("payload", random_value, "user:42:profile")
    attributes = only_span(monitor, "verify").attributes
    assert attributes["input.value"] == {
        "body": "payload", "signing_key": "[REDACTED]", "cache_key": "user:42:profile"}
    assert attributes["webhook.signature"] == "[REDACTED]"
    assert attributes["webhook.hmac"] == "sha256"


def test_captured_values_are_redacted_everywhere(monitor: Monitor, tmp_path: Path) -> None:
    """Secrets in arguments, results and nested fields never reach the database file."""
    @monitored(name="call_llm", capture_args=True, capture_result=True)
    def call_llm(prompt: str, api_key: str, password: str,
                 headers: dict[str, str]) -> dict[str, Any]:
        return {"answer": f"contact {EMAIL}", "password": "hunter2-canary"}

    call_llm(f"my key is {API_KEY}", API_KEY, "plain-canary",
             {"Authorization": f"Bearer {API_KEY}"})
    attributes = only_span(monitor, "call_llm").attributes
    assert attributes["input.value"]["api_key"] == "[REDACTED]"
    assert attributes["input.value"]["password"] == "[REDACTED]"  # by its name alone
    assert attributes["input.value"]["headers"] == {"Authorization": "[REDACTED]"}
    assert API_KEY not in attributes["input.value"]["prompt"]
    assert attributes["output.value"]["password"] == "[REDACTED]"
    monitor.shutdown()
    database = Path(monitor.settings.store_url.removeprefix("sqlite:///")).read_bytes()
    for canary in (API_KEY, EMAIL, "hunter2-canary", "plain-canary"):
        assert canary.encode() not in database


def test_each_value_is_bounded_by_capture_max_bytes(monitor_factory: Any) -> None:
    """A huge argument is cut to about ``capture_max_bytes`` of JSON, per value."""
    monitor = monitor_factory(capture_max_bytes=256)

    @monitored(name="summarise", capture_args=True)
    def summarise(text: str, title: str) -> None:
        pass

    summarise("lorem ipsum " * 10_000, "short title")
    captured = only_span(monitor, "summarise").attributes["input.value"]
    assert len(json.dumps(captured["text"])) <= 256
    assert "truncated" in captured["text"]
    assert captured["title"] == "short title"


def test_capture_failure_never_breaks_the_call(monitor: Monitor) -> None:
    """A value whose repr raises is recorded as a marker; the call itself is unaffected."""
    class Hostile:
        __slots__ = ()

        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    @monitored(name="odd", capture_args=True, capture_result=True)
    def odd(value: Any) -> Any:
        return value

    hostile = Hostile()
    assert odd(hostile) is hostile
    assert only_span(monitor, "odd").status == "ok"


def test_captured_rows_are_json_in_sqlite(monitor: Monitor) -> None:
    """The stored row holds the captured input as JSON text a SQL query can read."""
    @monitored(name="search", capture_args=["query"])
    def search(query: str) -> None:
        pass

    search("refund policy")
    stored_spans(monitor)  # flushes
    path = monitor.settings.store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        (attributes,) = connection.execute(
            "SELECT attributes FROM ragtrail_spans WHERE name = 'search'").fetchone()
    connection.close()
    assert json.loads(attributes)["input.value"] == {"query": "refund policy"}


class _Credentials(pydantic.BaseModel):
    user: int
    password: int  # given text: the ValidationError quotes the value
    nested: dict[str, int] = {}


def test_a_pydantic_validation_error_never_stores_a_secret_field_value(
        monitor: Monitor) -> None:
    """pydantic puts the field's name alone on a line and quotes its value on the next
    (``input_value='...'``): the password reached the span's message, exception event and
    stack trace in clear while its capture as an argument was redacted. Other fields' values
    stay, for debugging."""
    secret = "correct-horse-battery-staple"

    @monitored(name="login", capture_args=True)
    def login(raw: dict[str, Any]) -> _Credentials:
        return _Credentials(**raw)

    with pytest.raises(pydantic.ValidationError):
        login({"user": "ana", "password": secret, "nested": {"api_key": "sk-nested-value"}})
    span = only_span(monitor, "login")
    texts = [span.error_message or "", *(str(v) for e in span.events
                                         for v in e.attributes.values())]
    assert all(secret not in text and "sk-nested-value" not in text for text in texts)
    assert "input_value='ana'" in (span.error_message or "")
    assert span.attributes["input.value"]["raw"]["password"] == "[REDACTED]"
