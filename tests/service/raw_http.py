"""Raw HTTP/1.1 over a socket, for what httpx cannot do: send headers and part of a body,
then read the answer the server gives before the body is complete."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit


def answer_before_body_ends(url: str, head: list[str], body_start: bytes) -> tuple[int, dict, dict]:
    """Send request-line + headers `head` and `body_start` (never the rest); return (status,
    headers, JSON body) of the response. Raises TimeoutError when the server waits instead."""
    with _connect(url, head, body_start) as s:
        return _answer(s)


def answer_and_close(url: str, head: list[str], body_start: bytes) -> tuple[int, dict, dict]:
    """As answer_before_body_ends, and the server then closes the connection (TimeoutError
    when it keeps it open instead)."""
    with _connect(url, head, body_start) as s:
        answer = _answer(s)
        while s.recv(65536):
            pass
    return answer


def _connect(url: str, head: list[str], body_start: bytes) -> socket.socket:
    parts = urlsplit(url)
    raw = ("\r\n".join([*head, f"Host: {parts.hostname}", "", ""])).encode("latin-1")
    s = socket.create_connection((parts.hostname, parts.port), timeout=20)
    s.sendall(raw + body_start)
    return s


def _answer(s: socket.socket) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of the response read from `s`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    header_block, _, rest = data.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    headers = {k.lower(): v for k, v in headers.items()}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(lines[0].split()[1]), headers, json.loads(rest[:length] or b"null")


def chunk(data: bytes) -> bytes:
    """One chunk of a Transfer-Encoding: chunked body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"
