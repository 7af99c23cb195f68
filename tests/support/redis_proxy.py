"""A TCP proxy in front of Redis that loses the connection at a chosen command, as a network
failure or a Redis timeout would: `cut_at(n)` lets n commands through, then drops the next one
(or delivers it and drops its reply), and refuses every connection until `heal()`. `cut_on`
cuts at the first command holding given bytes (a chosen write of the code under test), and
`before` runs an action just before such a command goes through (a request that arrives
exactly then).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def split_commands(buf: bytes) -> tuple[list[bytes], bytes]:
    """Complete RESP commands (arrays of bulk strings, as redis-py sends them) and the rest."""
    out, pos = [], 0
    while True:
        start, end = pos, buf.find(b"\r\n", pos)
        if end < 0:
            return out, buf[start:]
        n, pos = int(buf[pos + 1 : end]), end + 2
        for _ in range(n):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return out, buf[start:]
            pos = end + 2 + int(buf[pos + 1 : end]) + 2
        if pos > len(buf):
            return out, buf[start:]
        out.append(buf[start:pos])


class RedisProxy:
    """Listens on 127.0.0.1:<port> and forwards to `upstream` (host, port)."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.lock = threading.Lock()
        self.budget: int | None = None  # commands still let through; None: no limit
        self.deliver_last = False
        self.dark = False
        self.marker: bytes | None = None  # cut_on: the bytes of the command to cut at
        self.heal_after: int | None = None  # cut_on: heal once this many connections were refused
        self.refused = 0
        self.actions: list[tuple[bytes, Callable[[], None]]] = []  # before: (bytes, action)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_at(self, n: int, *, deliver: bool = False) -> None:
        """Let `n` more commands through; the next one is lost (or, with `deliver`, it runs
        but its reply is lost); then the connection drops and the proxy stays dark."""
        with self.lock:
            self.budget, self.deliver_last, self.dark = n, deliver, False

    def cut_on(self, marker: bytes, *, heal_after: int | None = None) -> None:
        """The first command holding `marker` is lost; then the connection drops and the proxy
        stays dark, until `heal()` or, with `heal_after`, until it has refused that many
        connections (an outage that ends while clients retry)."""
        with self.lock:
            self.marker, self.heal_after, self.refused = marker, heal_after, 0

    def before(self, marker: bytes, action: Callable[[], None]) -> None:
        """Run `action()` once, just before the first command holding `marker` goes through."""
        with self.lock:
            self.actions.append((marker, action))

    def heal(self) -> None:
        with self.lock:
            self.budget, self.dark, self.marker = None, False, None

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                dark = self.dark
                if dark:
                    self.refused += 1
                    if self.heal_after is not None and self.refused >= self.heal_after:
                        self.dark, self.marker, self.heal_after = False, None, None
            if dark:
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream)
        muted, swallowed = threading.Event(), threading.Event()
        args = (server, client, muted, swallowed)
        threading.Thread(target=self._replies, args=args, daemon=True).start()
        pending = b""
        try:
            while data := client.recv(65536):
                commands, pending = split_commands(pending + data)
                for command in commands:
                    if not self._forward(command, server, muted):
                        if muted.is_set():  # delivered: let Redis run it before the drop
                            swallowed.wait(5)
                        return
        except OSError:
            pass
        finally:
            _close(client, server)

    def _forward(self, command: bytes, server: socket.socket, muted: threading.Event) -> bool:
        """Send one command upstream unless the cut is here; False once the cut happened."""
        with self.lock:
            due = [a for a in self.actions if a[0] in command]
            self.actions = [a for a in self.actions if a not in due]
        for _, action in due:
            action()
        with self.lock:
            if self.dark:
                return False
            if self.marker is not None and self.marker in command:
                self.marker, self.dark = None, True
                return False
            if self.budget is not None:
                if self.budget == 0:
                    self.dark = True
                    if self.deliver_last:
                        muted.set()
                        server.sendall(command)
                    return False
                self.budget -= 1
        server.sendall(command)
        return True

    def _replies(self, server, client, muted: threading.Event, swallowed: threading.Event):
        try:
            while data := server.recv(65536):
                if muted.is_set():
                    swallowed.set()
                    continue
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, server)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()


def client_through(proxy: RedisProxy, db: int) -> redis.Redis:
    """A client whose connections go through `proxy`; no client-side retries, so a lost
    connection surfaces as the error a longer outage would give."""
    return redis.Redis(port=proxy.port, db=db, retry=Retry(NoBackoff(), 0), socket_timeout=5)
