"""A TCP link in front of a server that can be slowed to a chosen rate (client to server), as
a busy network between a worker and its object store is: long uploads that a test can stop
half way."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class SlowLink:
    """Listens on 127.0.0.1:<port>, forwards to `upstream`; `rate` bytes/s uplink (None: full)."""

    def __init__(self, upstream: tuple[str, int], rate: float | None = None):
        self.upstream, self.rate = upstream, rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(16384 if up and self.rate else 65536):
                dst.sendall(data)
                if up and self.rate:
                    time.sleep(len(data) / self.rate)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
