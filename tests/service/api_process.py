"""One extra `pruneserve api` process with its own settings (e.g. a Redis that is down, a full
uploads disk, no metrics token), next to the session's live service."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.live_service import REPO, LiveService, _free_port


@contextlib.contextmanager
def api_process(svc: LiveService, root: Path, **overrides: str) -> Iterator[str]:
    """Yield the base URL of an api started with svc's environment plus PRUNESERVE_<overrides>."""
    port = _free_port()
    env = {**svc.env, **{f"PRUNESERVE_{k}": str(v) for k, v in overrides.items()}}
    log = open(root / f"api-{port}.log", "ab")  # noqa: SIM115 (closed below)
    cmd = [sys.executable, "-m", "clients.cli.main", "api", "--port", str(port)]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, proc)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"api exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(f"api at {url} not up after {timeout}s")
