"""Access-failure bursts per client (ragtrail.middleware._bursts)."""

from __future__ import annotations

import pytest

from ragtrail.middleware import _bursts
from ragtrail.middleware._bursts import FailureBursts


def test_the_threshold_th_failure_in_the_window_is_a_burst() -> None:
    """Nine failures are mistakes; the tenth within the window is a burst, and so on."""
    bursts = FailureBursts(10, 60.0)
    results = [bursts.failed("198.51.100.7", float(t)) for t in range(12)]
    assert results == [False] * 9 + [True] * 3


def test_failures_outside_the_window_do_not_count() -> None:
    """Slow failures (one every 10 s, window 60 s) never make a burst of 10."""
    bursts = FailureBursts(10, 60.0)
    assert not any(bursts.failed("198.51.100.7", t * 10.0) for t in range(30))


def test_clients_are_counted_apart() -> None:
    """Nine failures each from two clients make no burst."""
    bursts = FailureBursts(10, 60.0)
    results = [bursts.failed(client, float(t)) for t in range(9)
               for client in ("198.51.100.7", "198.51.100.8")]
    assert not any(results)


def test_memory_is_bounded_by_forgetting_the_stalest_client(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A spray from many addresses cannot grow the table past its bound."""
    monkeypatch.setattr(_bursts, "_MAX_CLIENTS", 3)
    bursts = FailureBursts(2, 60.0)
    for client in ("a", "b", "c", "d"):
        bursts.failed(client, 0.0)
    assert bursts.failed("a", 1.0) is False  # "a" was forgotten: this is its first failure
    assert bursts.failed("d", 1.0) is True


def test_clients_quiet_for_a_window_are_forgotten_as_failures_go_on() -> None:
    """A spray from 5,000 addresses stayed in memory for good (bounded, 9 MB at the cap);
    once their failures are older than the window, later failures forget them."""
    bursts = FailureBursts(10, 60.0)
    for n in range(5000):
        bursts.failed(f"10.0.{n // 256}.{n % 256}", 0.0)
    for n in range(2500):
        bursts.failed("192.0.2.1", 61.0 + n / 1000)
    assert len(bursts._clients) == 1
    assert bursts.failed("192.0.2.1", 64.0)  # its own burst still counts
