"""Hostile Python values for captured arguments, results and event metadata: secret-named keys,
canaries, control characters, deep and cyclic containers, huge numbers, objects whose
``__repr__`` raises, and objects with public and private state."""

from __future__ import annotations

import math
from typing import Any

from ._campaign import SECRET_FRAGMENTS, Recipe

__all__ = ["SECRET_KEYS", "hostile_value"]

SECRET_KEYS = ("password", "api_key", "apiKey", "Authorization", "cookie", "client_secret",
               "session_token", "x-api-key", "private_key", "passwd", "AWS_SECRET_ACCESS_KEY")
_PLAIN_KEYS = ("query", "top_k", "filters", "note", "max_tokens", "user", "\r\nkey", "k\x00",
               "\x1b[31mred", "", "ключ", "a" * 300)


class _Unprintable:
    """A caller's object whose ``__repr__`` and ``__str__`` raise."""

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded password=Canary-Hunter2!")

    __str__ = __repr__


class _Document:
    """A plain object: public state captured, private state never."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._secret = SECRET_FRAGMENTS[0]


def hostile_value(piece: str, recipe: Recipe, depth: int = 0) -> Any:
    """One value chosen by ``recipe``; containers recurse (at most three levels here, plus the
    explicitly deep and cyclic shapes)."""
    shape = recipe.below(16 if depth < 3 else 8)
    if shape < 3:
        return recipe.text(piece)
    if shape == 3:
        return recipe.long_text(piece, 3000)  # up to ~100 KB
    if shape == 4:
        return recipe.text(piece).encode("utf-8") + bytes([recipe.below(256)]) * recipe.below(50)
    if shape == 5:
        return recipe.pick((0, -1, 2**63, 2**5000, 4111111111111111, 5555555555554444,
                            math.nan, math.inf, -math.inf, 1e308, True, None))
    if shape == 6:
        return recipe.pick((_Unprintable(), _Document(recipe.text(piece)), object(), type,
                            print, range(10**9), iter([1]), Ellipsis))
    if shape == 7:
        return complex(1, 2) if recipe.below(2) else frozenset(recipe.text(piece))
    if shape < 11:
        return {_key(piece, recipe): hostile_value(piece, recipe, depth + 1)
                for _ in range(recipe.below(6))}
    if shape < 13:
        return [hostile_value(piece[::-1], recipe, depth + 1) for _ in range(recipe.below(6))]
    if shape == 13:
        nested: Any = recipe.text(piece)
        for _ in range(recipe.below(60)):  # deeper than the redactor's depth limit
            nested = [nested] if recipe.below(2) else {"password": "hunter2", "n": nested}
        return nested
    if shape == 14:
        cyclic: dict[str, Any] = {"query": recipe.text(piece)}
        cyclic["self"] = cyclic
        cyclic["list"] = [cyclic, {"token": SECRET_FRAGMENTS[recipe.below(3)]}]
        return cyclic
    return {i: recipe.text(piece) for i in range(recipe.below(300))}  # more items than kept


def _key(piece: str, recipe: Recipe) -> Any:
    shape = recipe.below(4)
    if shape == 0:
        return recipe.pick(SECRET_KEYS)
    if shape == 1:
        return recipe.pick(_PLAIN_KEYS)
    if shape == 2:
        return recipe.text(piece)[:80]
    return recipe.pick((1, None, True, 2.5, ("tuple", "key")))
