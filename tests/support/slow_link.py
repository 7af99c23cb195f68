"""A TCP link in front of a server that can be slowed to a chosen rate (client to server), as
a busy network between a worker and its object store is: long uploads that a test can stop
half way."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time


class SlowLink(socketserver.ThreadingTCPServer):
    """Listens on 127.0.0.1:<port>, forwards to `upstream`; `rate` bytes/s uplink (None: full)."""

    daemon_threads = True

    def __init__(self, upstream: tuple[str, int], rate: float | None = None):
        self.upstream, self.rate = upstream, rate
        super().__init__(("127.0.0.1", 0), _Pipe)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Pipe(socketserver.BaseRequestHandler):
    server: SlowLink

    def handle(self) -> None:
        upstream = socket.create_connection(self.server.upstream)
        down = threading.Thread(target=self._copy, args=(upstream, self.request, False))
        down.start()
        self._copy(self.request, upstream, True)
        down.join()

    def _copy(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(16384 if up and self.server.rate else 65536):
                dst.sendall(data)
                if up and self.server.rate:
                    time.sleep(len(data) / self.server.rate)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
