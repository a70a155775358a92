"""The JSON columns: orjson (``ragtrail[speedups]``) and the standard encoder agree."""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
from typing import Any, NamedTuple

import pytest

from ragtrail.store import _json


@dataclasses.dataclass
class Point:
    x: int


class Score(float):
    """Like ``numpy.float64``: a float subclass orjson does not serialise by itself."""


class Pair(NamedTuple):
    doc_id: str
    score: float


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


# Values records carry, hostile ones included: non-ASCII, controls, nesting, odd numbers.
VALUES: list[Any] = [
    {},
    {"query": "refund policy", "top_k": 5, "score": 0.25, "ok": True, "none": None},
    {"text": "ключ \u202e\U0001f4a5 \x00 \x1b[2J \r\n \t \"quoted\" \\ back"},
    {"documents": [{"id": "doc-1", "score": 0.9, "tags": ["a", "b"]}, [1, [2, [3]]]]},
    {"when": datetime.datetime(2026, 11, 27, 8, 0, tzinfo=datetime.timezone.utc),
     "point": Point(1), "opaque": Opaque()},
    {"big": 2**70 + 1, "negative": -(10**19 - 1), "u64": 2**64 - 1, "max": 2**63 - 1},
    {"surrogate": "\udc80 lone"},
    {1: "int key", 2.5: "float key", False: "bool key", None: "none key"},
    {"score": Score(0.25), "pair": Pair("doc-1", 0.5), "pairs": [Pair("doc-2", Score(0.75))]},
]


def orjson_encoder() -> Any:
    pytest.importorskip("orjson")
    return _json.codec()[0]


@pytest.mark.parametrize("value", VALUES)
def test_both_encoders_store_the_same_value(value: Any) -> None:
    """Whichever encoder wrote a row, readers decode the same value, of the same types
    (orjson's parser alone would read an integer beyond 64 bits as a float)."""
    standard = _json._standard_encoder()(value)
    fast = orjson_encoder()(value)
    expected = json.loads(standard)
    assert json.loads(fast) == expected
    for decoded in (_json.decode(fast), _json.decode(standard)):
        assert decoded == expected
        assert repr(decoded) == repr(expected)


def test_objects_become_their_str_with_either_encoder() -> None:
    """Datetimes, dataclasses and unknown objects are stored as ``str(value)``: a dataclass
    is not expanded into fields by one encoder and shown as its repr by the other."""
    value = VALUES[4]
    for encode in (_json._standard_encoder(), orjson_encoder()):
        assert json.loads(encode(value)) == {"when": "2026-11-27 08:00:00+00:00",
                                             "point": "Point(x=1)", "opaque": "opaque!"}


def test_what_orjson_refuses_goes_to_the_standard_encoder() -> None:
    """Integers beyond 64 bits and lone surrogates, which orjson refuses, are still stored."""
    encode = orjson_encoder()
    assert encode({"big": 2**70}) == '{"big":1180591620717411303424}'
    assert encode({"s": "\udc80"}) == '{"s":"\\udc80"}'


def test_unencodable_keys_still_raise() -> None:
    """A tuple key is refused by both: the record is dropped (and counted) by the writer."""
    for encode in (_json._standard_encoder(), orjson_encoder()):
        with pytest.raises(TypeError):
            encode({(1, 2): "tuple key"})


def test_without_orjson_the_standard_library_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """ragtrail without the speedups extra works: no orjson, the standard encoder and parser."""
    monkeypatch.setitem(sys.modules, "orjson", None)  # makes ``import orjson`` fail
    encode, decode = _json.codec()
    assert decode is json.loads
    assert encode({"text": "é"}) == '{"text":"\\u00e9"}'


def test_rows_written_by_the_standard_encoder_are_read_back() -> None:
    """A store written without orjson (``NaN`` included) reads the same with it."""
    written = _json._standard_encoder()({"ratio": float("nan"), "text": "é"})
    decoded = _json.decode(written)
    assert decoded["text"] == "é"
    assert decoded["ratio"] != decoded["ratio"]  # NaN
