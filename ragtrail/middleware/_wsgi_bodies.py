"""The bodies of a WSGI request and response, wrapped: the response iterated and closed in
the request's own context, the request's input counted against the body limit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragtrail.middleware._exchange import Exchange
    from ragtrail.middleware._wsgi import _Responder

__all__ = ["BodyTooLarge", "LimitedInput", "ResponseBody", "close"]


class BodyTooLarge(Exception):
    """Raised into the app by ``wsgi.input`` once the undeclared body passes the limit."""


class ResponseBody:
    """The app's response body, iterated and closed inside the request's context."""

    __slots__ = ("_chunks", "_responder", "_result")

    def __init__(self, result: Iterable[bytes], responder: _Responder) -> None:
        self._result = result
        self._responder = responder
        self._chunks: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        if self._chunks is None:  # one pass over the body, however often iter() is called
            self._chunks = _chunks(self._result, self._responder)
        return self._chunks

    def close(self) -> None:
        """PEP 3333: the server calls this once done, even when the client went away."""
        self._responder.context.run(close_and_finish, self._result, self._responder)


_END: Any = object()  # next()'s default: the app's body is done (no StopIteration raised)


def _chunks(result: Iterable[bytes], responder: _Responder) -> Iterator[bytes]:
    """The app's chunks, each drawn inside the request's context. A generator, not a class
    with ``__next__``: a Python call and a caught StopIteration fewer per chunk."""
    run = responder.context.run
    try:
        iterator = run(iter, result)
        chunk = run(next, iterator, _END)
        while chunk is not _END and not responder.replaced:
            if chunk:
                responder.body_sent = True
            yield chunk
            chunk = run(next, iterator, _END)
    except Exception as exc:
        if responder.body_sent:
            run(responder.finish, exc)
            raise
        yield from run(responder.failed, exc)
        return
    if responder.replaced:  # a generator app answered after its body was cut: 413
        yield from run(responder.answer, 413)


class LimitedInput:
    """``wsgi.input`` for a body of undeclared length: raises once it passes the limit."""

    __slots__ = ("_exchange", "_input", "_left")

    def __init__(self, stream: Any, limit: int, exchange: Exchange) -> None:
        self._input = stream
        self._left = limit
        self._exchange = exchange

    def read(self, size: int | None = -1) -> bytes:
        # Never ask for more than one byte past the limit, so an endless body is not buffered.
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        return self._count(self._input.read(want))

    def readline(self, size: int | None = -1) -> bytes:
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        return self._count(self._input.readline(want))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def _count(self, data: bytes) -> bytes:
        self._left -= len(data)
        if self._left < 0:
            self._exchange.cut_body()
            raise BodyTooLarge
        return data


def close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


def close_and_finish(result: Iterable[bytes], responder: _Responder) -> None:
    try:
        close(result)
    finally:
        responder.finish(None)
