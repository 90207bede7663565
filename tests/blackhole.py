"""A TCP proxy in front of Redis that can turn its open connections into black holes.

``freeze()`` makes every connection open at that moment silently drop what it carries, in both
directions, without closing anything: to the client it looks like a peer that vanished (a
half-open TCP connection after a network partition or a crashed host). Connections made after
``freeze()`` are forwarded normally.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class BlackholeProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._frozen: set[int] = set()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="blackhole-accept", daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def freeze(self) -> int:
        """Black-hole every connection open now; returns how many there are."""
        with self._lock:
            for client, _ in self._pairs:
                self._frozen.add(id(client))
            return len(self._pairs)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for pair in self._pairs:
                for sock in pair:
                    with contextlib.suppress(OSError):
                        sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._pairs.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink, id(client)), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, key: int) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            if key in self._frozen:
                continue  # swallowed: the other side never hears of it
            try:
                sink.sendall(data)
            except OSError:
                return
