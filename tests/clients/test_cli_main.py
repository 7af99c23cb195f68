"""The `pruneserve` entry point: every refusal is one line and an exit status from exits.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESERVE_")}
    full_env.update(PYTHONPATH=str(REPO), **env)
    cmd = [sys.executable, "-m", "clients.cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=full_env, timeout=60)


def test_unsafe_api_settings_exit_2_with_one_line():
    proc = run_cli("api", "--port", "1", PRUNESERVE_ENV="production", PRUNESERVE_API_KEYS="")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: PRUNESERVE_API_KEYS is empty")


def test_usage_errors_exit_2():
    proc = run_cli("prune", "--model", "m")
    assert proc.returncode == 2 and "required" in proc.stderr
    assert run_cli("no-such-command").returncode == 2
