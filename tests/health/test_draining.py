"""SIGTERM: readiness flips to 503 while liveness stays 200, then the server's shutdown runs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import FrameType

import pytest

from ragtrail.health import FunctionCheck, install_sigterm_handler

from ._servers import Prober, kubelet_probe, service_process, wait_until
from .conftest import ServiceFactory

DRAIN_APP = Path(__file__).with_name("_drain_app.py")


@pytest.mark.network
def test_sigterm_to_a_real_service_drains_then_exits(tmp_path: Path) -> None:
    """A real SIGTERM: /ready fails at once, /health stays up, the process exits after the drain."""
    # A drain long enough that a loaded CI machine (coverage on) still sees it from outside.
    with service_process(str(DRAIN_APP), f"sqlite:///{tmp_path / 'audit.db'}", "6") as process:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: kubelet_probe(f"{base}/ready"), timeout=10)
        readiness = Prober(f"{base}/ready", failure_threshold=1)
        liveness = Prober(f"{base}/health", failure_threshold=1)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        wait_until(lambda: not readiness.probe(), timeout=4.0)
        assert liveness.probe()
        assert not readiness.probe()
        assert process.wait(15) == -signal.SIGTERM
        assert time.monotonic() - signalled >= 5.9  # it kept serving through the drain


def test_handler_chains_to_the_previous_one_after_the_drain(
        make_service: ServiceFactory) -> None:
    """In-process: draining starts on the signal; the earlier handler runs drain_seconds later."""
    service = make_service(FunctionCheck(lambda: True, "ok"), store_check=False)
    chained: list[float] = []

    def previous(sig: int, frame: FrameType | None) -> None:
        chained.append(time.monotonic())

    original = signal.signal(signal.SIGTERM, previous)
    try:
        uninstall = install_sigterm_handler(service, drain_seconds=0.3)
        sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        wait_until(lambda: service.draining, timeout=1.0)
        assert chained == []
        wait_until(lambda: chained, timeout=2.0)
        assert chained[0] - sent >= 0.29
        uninstall()
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, original)


def test_a_second_signal_chains_at_once(make_service: ServiceFactory) -> None:
    """An operator's second SIGTERM during the drain goes straight to the previous handler."""
    service = make_service(store_check=False)
    chained: list[int] = []
    original = signal.signal(signal.SIGTERM, lambda sig, frame: chained.append(sig))
    try:
        uninstall = install_sigterm_handler(service, drain_seconds=30)
        os.kill(os.getpid(), signal.SIGTERM)
        wait_until(lambda: service.draining, timeout=1.0)
        os.kill(os.getpid(), signal.SIGTERM)
        wait_until(lambda: chained, timeout=1.0)
        assert chained == [signal.SIGTERM]
        uninstall()
    finally:
        signal.signal(signal.SIGTERM, original)


def test_negative_drain_is_refused(make_service: ServiceFactory) -> None:
    """drain_seconds < 0 is a configuration mistake."""
    with pytest.raises(ValueError, match="drain_seconds"):
        install_sigterm_handler(make_service(store_check=False), drain_seconds=-1)
