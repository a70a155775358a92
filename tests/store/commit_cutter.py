"""A loopback TCP proxy in front of PostgreSQL that cuts a connection at its next COMMIT.

What a failover, a server crash or a network cut does at the worst moment: the client sent
COMMIT and never hears the answer. ``cut_next_commit(after_server=True)`` forwards COMMIT,
waits for the server's answer to it (``CommandComplete "COMMIT"``: the server has committed)
and closes both sides instead of passing it on; ``after_server=False`` closes both sides
instead of forwarding COMMIT, so the server rolls back. Reading the protocol instead of
sleeping makes the moment exact. ``refuse`` makes the proxy close that many of the next
connections at once (the server unreachable for a while after the cut).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

from sqlalchemy.engine import make_url

# psycopg sends COMMIT as a simple query; the server answers CommandComplete with its tag.
COMMIT_QUERY = b"Q\x00\x00\x00\x0bCOMMIT\x00"
COMMIT_DONE = b"C\x00\x00\x00\x0bCOMMIT\x00"


class CommitCutter:
    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.cuts = 0  # connections cut at a COMMIT so far
        self.refuse = 0  # connections still to refuse
        self._refuse_after_cut = 0
        self._armed: bool | None = None  # None, or after_server for the next COMMIT
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def url(self, database_url: str) -> str:
        """``database_url`` (a server on 127.0.0.1) through the proxy."""
        return make_url(database_url).set(port=self.port).render_as_string(hide_password=False)

    def cut_next_commit(self, *, after_server: bool, then_refuse: int = 0) -> None:
        with self._lock:
            self._armed = after_server
            self._refuse_after_cut = then_refuse

    def __enter__(self) -> CommitCutter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self.listener.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            ready, _, _ = select.select([self.listener], [], [], 0.1)
            if not ready:
                continue
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                refused, self.refuse = self.refuse > 0, max(0, self.refuse - 1)
            if refused:
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.server_port))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _take_arm(self) -> bool | None:
        with self._lock:
            armed, self._armed = self._armed, None
            return armed

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        waiting_for_answer = False  # COMMIT forwarded, to be cut at its answer
        answer = b""
        try:
            while not self._closed.is_set():
                ready, _, _ = select.select([client, server], [], [], 0.1)
                for source in ready:
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is client:
                        if COMMIT_QUERY in data and self._armed is not None:
                            after_server = self._take_arm()
                            if after_server is False:
                                self._cut()
                                return
                            waiting_for_answer = after_server is True
                        server.sendall(data)
                    elif waiting_for_answer:
                        answer += data
                        if COMMIT_DONE in answer:  # committed: the client never hears it
                            self._cut()
                            return
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            for side in (client, server):
                with contextlib.suppress(OSError):
                    side.shutdown(socket.SHUT_RDWR)
                side.close()

    def _cut(self) -> None:
        with self._lock:
            self.cuts += 1
            self.refuse = self._refuse_after_cut
