"""`pruneserve api` as an operator runs it: worker processes from PRUNESERVE_API_WORKERS (or
--workers), and a clear error for a bad count."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESERVE_")}
    env.update(PYTHONPATH=str(REPO), PRUNESERVE_ENV="development")
    env.update({f"PRUNESERVE_{k}": v for k, v in settings.items()})
    return env


def test_api_workers_setting_starts_that_many_processes(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "clients.cli.main", "api", "--port", str(port)]
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=_env(API_WORKERS="2"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started = lambda: (tmp_path / "api.log").read_text().count("Started server process")  # noqa: E731
    try:
        deadline, serving = time.monotonic() + 60, False
        while time.monotonic() < deadline and not (serving and started() >= 2):
            with contextlib.suppress(httpx.HTTPError):
                serving = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success
            time.sleep(0.2)
        assert serving and started() == 2, (tmp_path / "api.log").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_api_refuses_a_worker_count_below_one():
    cmd = [sys.executable, "-m", "clients.cli.main", "api", "--workers", "0"]
    out = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "--workers / PRUNESERVE_API_WORKERS must be >= 1, not 0" in out.stderr


def test_worker_refuses_a_retention_that_is_not_positive():
    cmd = [sys.executable, "-m", "clients.cli.main", "worker"]
    env = _env(ARTIFACT_TTL_DAYS="0")
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("error: "), out.stderr
    assert "PRUNESERVE_ARTIFACT_TTL_DAYS must be > 0 days" in out.stderr
    assert "Traceback" not in out.stderr
