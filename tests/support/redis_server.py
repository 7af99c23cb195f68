"""A private redis-server for unit tests of Redis-backed code (one per test process).

Falls back to PRUNESERVE_TEST_REDIS_URL (default db 11 of the local Redis) without redis-server.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time

_URL: list[str] = []


def redis_url() -> str:
    """The URL of a Redis that only this test process uses; started on first call."""
    if _URL:
        return _URL[0]
    server = shutil.which("redis-server")
    if server is None:
        _URL.append(os.environ.get("PRUNESERVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/11"))
        return _URL[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="ps-redis-")
    cmd = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(_stop, proc, workdir)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    _URL.append(f"redis://127.0.0.1:{port}/0")
    return _URL[0]


def _stop(proc: subprocess.Popen, workdir: str) -> None:
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)
