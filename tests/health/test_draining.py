"""SIGTERM: readiness flips to 503 while liveness stays 200, then the server's shutdown runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import pytest

from ragtrail._threads import CONTROL_SIGNALS
from ragtrail.health import FunctionCheck, install_sigterm_handler
from ragtrail.instrument import Monitor

from ._servers import Prober, kubelet_probe, service_process, unused_port, wait_until
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
        wait_until(lambda: service.draining, timeout=5.0)
        assert chained == []
        wait_until(lambda: chained, timeout=5.0)
        assert chained[0] - sent >= 0.29
        uninstall()
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, original)


def test_a_handler_the_event_loop_holds_runs_after_the_drain(
        make_service: ServiceFactory) -> None:
    """hypercorn registers its shutdown with ``loop.add_signal_handler``; the loop hears of
    the signal through its wake-up fd whatever Python handler is set, so the server stopped at
    once and nothing drained. The loop's handler is taken over and runs after the drain."""
    service = make_service(FunctionCheck(lambda: True, "ok"), store_check=False)
    original = signal.getsignal(signal.SIGTERM)

    async def serve() -> float:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        uninstall = install_sigterm_handler(service, drain_seconds=0.3)
        sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = sent + 5.0
        while not service.draining and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert service.draining
        assert not stopped.is_set()  # the server is still serving
        await asyncio.wait_for(stopped.wait(), timeout=5.0)
        elapsed = time.monotonic() - sent
        uninstall()
        assert signal.SIGTERM in loop._signal_handlers  # type: ignore[attr-defined]
        loop.remove_signal_handler(signal.SIGTERM)
        return elapsed

    try:
        assert asyncio.run(serve()) >= 0.29
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
        wait_until(lambda: service.draining, timeout=5.0)
        os.kill(os.getpid(), signal.SIGTERM)
        wait_until(lambda: chained, timeout=5.0)
        assert chained == [signal.SIGTERM]
        uninstall()
    finally:
        signal.signal(signal.SIGTERM, original)


def test_negative_drain_is_refused(make_service: ServiceFactory) -> None:
    """drain_seconds < 0 is a configuration mistake."""
    with pytest.raises(ValueError, match="drain_seconds"):
        install_sigterm_handler(make_service(store_check=False), drain_seconds=-1)


def _blocked_signals(native_id: int) -> set[int]:
    """The signals a thread of this process blocks, from /proc (Linux)."""
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    mask = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1],
               16)
    return {number for number in range(1, 65) if mask >> (number - 1) & 1}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads signal masks from /proc")
def test_ragtrail_threads_leave_the_control_signals_to_the_main_thread(
        make_monitor: Callable[..., Monitor], make_service: ServiceFactory) -> None:
    """Every thread ragtrail starts blocks SIGTERM and friends, so the kernel never hands the
    kubelet's SIGTERM to a thread where Python cannot run the drain; the caller's mask is kept."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    monitor = make_monitor(otlp_endpoint=f"http://127.0.0.1:{unused_port()}",
                           otlp_timeout_ms=200)
    alerted = threading.Event()
    monitor.register_alert_callback(lambda event: alerted.set())
    service = make_service(FunctionCheck(lambda: True, "ok"), monitor=monitor)
    service.start()
    monitor.security_event("probe", "high", "test", "starts the alert workers")
    monitor.store.flush(5)
    wait_until(alerted.is_set)
    # The long-lived threads; a check's short-lived worker may come and go meanwhile.
    names = {"ragtrail-store-writer", "ragtrail-health", "ragtrail-metrics", "ragtrail-alerts",
             "ragtrail-alerts-supervisor", "ragtrail-export"}
    ours = [t for t in threading.enumerate() if t.name in names]
    assert {t.name for t in ours} == names
    wanted = {int(s) for s in CONTROL_SIGNALS}
    for thread in ours:
        wait_until(lambda: thread.native_id is not None)  # noqa: B023
        assert thread.native_id is not None
        assert wanted <= _blocked_signals(thread.native_id), thread.name
    assert signal.SIGTERM not in _blocked_signals(threading.get_native_id())
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before


def test_the_chained_handler_runs_while_the_main_thread_waits(
        make_service: ServiceFactory) -> None:
    """The drain timer re-sends the signal to the main thread by name: a main thread blocked in
    a long wait runs the chained handler when the drain ends, not when its wait times out."""
    service = make_service(store_check=False)
    chained = threading.Event()
    original = signal.signal(signal.SIGTERM, lambda sig, frame: chained.set())
    try:
        uninstall = install_sigterm_handler(service, drain_seconds=0.05)
        started = time.monotonic()
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        assert chained.wait(20)  # the handler runs inside this wait and ends it
        assert time.monotonic() - started < 5
        uninstall()
    finally:
        signal.signal(signal.SIGTERM, original)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads signal masks from /proc")
def test_the_apps_code_runs_with_the_signals_a_child_process_needs(
        make_monitor: Callable[..., Monitor], make_service: ServiceFactory) -> None:
    """Alert callbacks and sync checks (the app's code, which may start child processes that
    inherit the mask) run with SIGTERM unblocked; the alert thread blocks it again after."""
    monitor = make_monitor()
    seen: dict[str, set[int]] = {}

    def alert(event: object) -> None:
        seen["alert"] = _blocked_signals(threading.get_native_id())

    def check() -> bool:
        seen["check"] = _blocked_signals(threading.get_native_id())
        return True

    monitor.register_alert_callback(alert)
    make_service(FunctionCheck(check, "sync"), monitor=monitor, store_check=False).start()
    monitor.security_event("probe", "high", "test", "runs the alert callback")
    wait_until(lambda: {"alert", "check"} <= set(seen))
    assert signal.SIGTERM not in seen["alert"]
    assert signal.SIGTERM not in seen["check"]
    workers = [t for t in threading.enumerate() if t.name == "ragtrail-alerts"]
    assert workers
    for worker in workers:
        wait_until(lambda: worker.native_id is not None)  # noqa: B023
        assert worker.native_id is not None
        wait_until(lambda: signal.SIGTERM in _blocked_signals(worker.native_id))  # noqa: B023


def test_after_the_loop_closed_uninstall_and_sigterm_fall_back_to_the_default(
        tmp_path: Path) -> None:
    """With the loop's handler taken over, a SIGTERM after the server returned (its loop
    closed) raised "Event loop is closed" and the process exited 1; an ``uninstall()`` then
    raised too. Both fall back to the default action now, as a closed loop would leave it."""
    script = tmp_path / "served.py"
    script.write_text(
        "import asyncio, os, signal, time\n"
        "from ragtrail.health import install_sigterm_handler\n"
        "class Service:\n"
        "    def begin_draining(self): pass\n"
        "uninstall = []\n"
        "async def serve():\n"
        "    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: None)\n"
        "    uninstall.append(install_sigterm_handler(Service(), drain_seconds=0))\n"
        "asyncio.run(serve())\n"
        "if os.environ['THEN'] == 'uninstall':\n"
        "    uninstall[0]()\n"
        "    print('uninstalled', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(5)\n"
        "print('still alive')\n")
    for then in ("signal", "uninstall"):
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=60, check=False, env={**os.environ, "THEN": then})
        assert done.returncode == -signal.SIGTERM, (then, done.stdout, done.stderr[-600:])
        assert "still alive" not in done.stdout
