"""The store's JSON columns: orjson when installed (``ragtrail[speedups]``), else ``json``.

The writer thread shares the GIL with the application, so its JSON time is the app's time: a
captured retrieval (about 2 KB of query and documents) took 15.7 us to encode with the
standard C encoder and 0.8 us with orjson. The two are made to agree on what readers get:

- what orjson refuses to encode (integers beyond 64 bits, lone surrogates, keys of other
  types) goes to the standard encoder, so both accept the same values;
- types orjson does not know become what ``json`` makes of them (``_as_standard``);
- orjson's parser reads an integer beyond 64 bits as a float, so text holding a run of 19 or
  more digits (a number that may not fit, or digits inside a string: a false alarm costs only
  speed) is parsed by ``json``, as is what orjson refuses (the ``NaN`` or ``1e400`` the
  standard encoder may have written, escaped lone surrogates).

Left different: orjson stores non-ASCII text as UTF-8 where ``json`` writes ``\\u`` escapes, a
NaN as ``null`` (``json``: ``NaN``), an ``Enum`` member as its value (``json``: its ``str()``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

__all__ = ["codec", "decode", "encode"]

Encoder = Callable[[Any], str]
Decoder = Callable[[str], Any]


def _orjson() -> Any:
    """The orjson module (the ``speedups`` extra), or None when it cannot be imported."""
    try:
        import orjson
    except ImportError:
        return None
    return orjson


def codec() -> tuple[Encoder, Decoder]:
    """(encode, decode) with orjson if it can be imported, else the standard library's."""
    standard = _standard_encoder()
    orjson = _orjson()
    if orjson is None:
        return standard, json.loads
    dumps: Callable[..., bytes] = orjson.dumps
    refused_value = orjson.JSONEncodeError
    parse, refused_text = orjson.loads, orjson.JSONDecodeError
    options = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
    long_number = re.compile(r"\d{19}").search

    def encode(value: Any) -> str:
        try:
            return dumps(value, default=_as_standard, option=options).decode()
        except refused_value:
            return standard(value)

    def decode(text: str) -> Any:
        if long_number(text) is None:
            try:
                return parse(text)
            except refused_text:
                pass
        return json.loads(text)

    return encode, decode


def _standard_encoder() -> Encoder:
    """``json.dumps`` without its per-call set-up: the C encoder built once (about 2.5x faster
    for the small mappings records carry), else the standard encoder. Unknown types become
    ``str(value)``; a self-referencing mapping raises (and its record is dropped)."""
    standard = json.JSONEncoder(separators=(",", ":"), default=str,
                                check_circular=False).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return standard
    try:
        chunks = make(None, str, json.encoder.encode_basestring_ascii, None, ":", ",", False,
                      False, True)
    except TypeError:  # another signature on another Python
        return standard

    def fast(value: Any) -> str:
        return "".join(chunks(value, 0))

    probe = {"s": "\u00e9\n", "n": [1, 2.5, None, True], "o": object}
    return fast if fast(probe) == standard(probe) else standard


def _as_standard(value: Any) -> Any:
    """What ``json`` makes of a value orjson does not serialise itself: a float subclass
    (``numpy.float64``) stays a number and a tuple subclass (a named tuple) a list; anything
    else becomes ``str(value)``."""
    if isinstance(value, float):
        return float(value)
    if isinstance(value, tuple | list):
        return list(value)
    return str(value)


encode, decode = codec()
