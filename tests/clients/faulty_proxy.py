"""An HTTP proxy in front of the live service that records every request and can break
chosen responses (drop, truncate, corrupt, 503) the way a flaky network or gateway does.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

# not passed on: hop-by-hop, recomputed, or written by BaseHTTPRequestHandler itself
SKIP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "server",
    "date",
}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    status: int = 0


@dataclass
class Fault:
    kind: str  # drop | truncate | corrupt | unavailable
    method: str
    path_contains: str
    times: int = 1


@dataclass
class FaultyProxy:
    upstream: str
    requests: list[Seen] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FaultyProxy:
        self.http = httpx.Client(base_url=self.upstream, timeout=30)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.http.close()

    def break_next(self, kind: str, method: str, path_contains: str, times: int = 1) -> None:
        with self.lock:
            self.faults.append(Fault(kind, method, path_contains, times))

    def seen(self, method: str, path_contains: str) -> list[Seen]:
        return [r for r in self.requests if r.method == method and path_contains in r.path]

    def take_fault(self, method: str, path: str) -> str | None:
        with self.lock:
            for f in self.faults:
                if f.times > 0 and f.method == method and f.path_contains in path:
                    f.times -= 1
                    return f.kind
        return None


def _handler(proxy: FaultyProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def _any(self) -> None:
            self.close_connection = True
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
            proxy.requests.append(seen)
            fault = proxy.take_fault(self.command, self.path)
            if fault == "drop":  # the request reached the service, the answer is lost
                self._forward(body)
                return
            if fault == "unavailable":
                seen.status = 503
                self._reply(503, {"content-type": "application/json"}, b'{"detail":"bad gateway"}')
                return
            resp = self._forward(body)
            seen.status = resp.status_code
            content = resp.content
            if fault == "corrupt" and content:
                i = len(content) // 2
                content = content[:i] + bytes([content[i] ^ 0xFF]) + content[i + 1 :]
            cut = len(content) // 2 if fault == "truncate" else None
            self._reply(resp.status_code, resp.headers, content, cut)

        def _forward(self, body: bytes) -> httpx.Response:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in SKIP_HEADERS}
            headers["accept-encoding"] = "identity"
            return proxy.http.request(self.command, self.path, headers=headers, content=body)

        def _reply(self, status: int, headers, content: bytes, cut: int | None = None) -> None:
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() not in SKIP_HEADERS:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(content)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(content if cut is None else content[:cut])
            self.wfile.flush()

        do_GET = do_POST = do_PUT = do_DELETE = _any

    return Handler
