"""The api process: builds without torch/transformers imports, and of the worker reads only the
methods' torch-free declarations; refuses unsafe settings."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.live_service import REPO

CHECK = """
import re, sys
from service.main import create_app
import clients.cli.serve
import service.methods
app = create_app()
assert "/v1/jobs/{job_id}/archive" in app.openapi()["paths"]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
assert not heavy, heavy
# of the worker only the methods' declarations: their registry and each one's options
declared = r"worker(\\.engine(\\.methods(\\.(options|registry)|\\.\\w+(\\.options)?)?)?)?"
worker = [m for m in sys.modules if m.split(".")[0] == "worker"]
engine = sorted(m for m in worker if not re.fullmatch(declared, m))
assert not engine, engine
assert "worker.engine.methods.smp.options" in sys.modules  # the check sees the methods
"""


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESERVE_")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def test_api_never_imports_torch_or_worker():
    env = _env(PRUNESERVE_ENV="development")
    subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, env=env, check=True)


def test_api_command_refuses_missing_keys_with_one_clear_line():
    r = subprocess.run(
        [sys.executable, "-m", "clients.cli.main", "api", "--port", "1"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert "error: PRUNESERVE_API_KEYS is empty" in r.stderr
    assert "Traceback" not in r.stderr
