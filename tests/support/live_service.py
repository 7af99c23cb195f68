"""A real pruneserve deployment for end-to-end tests: redis, `pruneserve api`, `pruneserve worker`.

Used through the session fixture `live_service` (tests/conftest.py); see LiveService.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
SHARED_WIKITEXT = REPO.parent / "shared" / "data" / "wikitext-2-raw"
TINY_MODEL = "tiny-llama"
CORPUS_BYTES = 50_000


@dataclass
class LiveService:
    """A running api + worker + redis on temporary directories.

    Attributes: url (http://127.0.0.1:<port>), api_key (tenant "alice"), other_api_key (tenant
    "bob"), metrics_token (Bearer token of /metrics), models_dir (holds the tiny model
    `TINY_MODEL` = "tiny-llama"), artifacts_dir,
    data_dir (wikitext-2-raw/{valid,test}.txt, ~50 KB each), redis_url, env (the PRUNESERVE_*
    environment the processes run with), root (logs: api.log, worker-<n>.log).
    Methods: client(key=None) -> httpx.Client with the Bearer header; headers(key=None);
    wait_job(client, job_id, states, timeout) -> job JSON; start_worker(**env_overrides),
    stop_worker() (SIGTERM), kill_worker() (SIGKILL of its process group), ensure_worker();
    close() stops everything.
    """

    root: Path
    url: str = ""
    api_key: str = field(default_factory=lambda: secrets.token_hex(16))
    other_api_key: str = field(default_factory=lambda: secrets.token_hex(16))
    metrics_token: str = field(default_factory=lambda: secrets.token_hex(16))
    redis_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    worker_starts: int = 0

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    def start(cls, root: Path) -> LiveService:
        """Start redis (own server when redis-server exists), api and one worker; wait /readyz."""
        svc = cls(root=Path(root))
        try:
            svc._prepare_dirs()
            svc._start_redis()
            port = _free_port()
            svc.url = f"http://127.0.0.1:{port}"
            svc.env = svc._base_env()
            svc._spawn("api", ["api", "--host", "127.0.0.1", "--port", str(port)], svc.env)
            svc.start_worker()
            svc.wait_ready()
        except BaseException:
            svc.close()
            raise
        return svc

    def close(self) -> None:
        for name in ("worker", "api", "redis"):
            self._stop(name, signal.SIGTERM)

    def start_worker(self, **env_overrides: str) -> subprocess.Popen:
        """Start a worker; `env_overrides` such as MAX_ATTEMPTS=1 become PRUNESERVE_* variables."""
        self.worker_starts += 1
        env = {**self.env, **{f"PRUNESERVE_{k}": str(v) for k, v in env_overrides.items()}}
        args = ["worker", "--queues", "gpu", "--concurrency", "1"]
        return self._spawn("worker", args, env, log=f"worker-{self.worker_starts}.log")

    def stop_worker(self) -> None:
        self._stop("worker", signal.SIGTERM)

    def kill_worker(self) -> None:
        """SIGKILL the worker and its pool children, as an OOM killer or node loss would."""
        self._stop("worker", signal.SIGKILL)

    def ensure_worker(self, timeout: float = 90) -> None:
        """A worker is running and has announced itself (restart after a kill test)."""
        proc = self.procs.get("worker")
        if proc is None or proc.poll() is not None:
            self.start_worker()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None and name != "redis":
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.root}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.3)
        raise TimeoutError(f"service not ready after {timeout}s: {last}; logs in {self.root}")

    # -- helpers for tests ------------------------------------------------------------------
    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(key), timeout=30)

    def wait_job(
        self, client: httpx.Client, job_id: str, states: tuple[str, ...], timeout: float = 120
    ) -> dict:
        """Poll GET /v1/jobs/{id} until its state is one of `states`; returns the job JSON."""
        deadline = time.monotonic() + timeout
        job: dict = {}
        while time.monotonic() < deadline:
            job = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
            if job["state"] in states:
                return job
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} not in {states} after {timeout}s: {job}")

    # -- internals -------------------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        for d in (self.artifacts_dir, self.root / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
        prepare_dirs(self.models_dir, self.data_dir)

    def _start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            self.redis_url = os.environ.get("PRUNESERVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
            import redis

            redis.Redis.from_url(self.redis_url).flushdb()
            return
        port = _free_port()
        cmd = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        self._spawn("redis", [*cmd, "no", "--dir", str(self.root)], dict(os.environ), raw=True)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("redis-server did not start")

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESERVE_")}
        env.update(
            PYTHONPATH=str(REPO),
            TMPDIR=str(self.root / "tmp"),  # what a killed worker leaves goes with the root
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            PRUNESERVE_ENV="production",
            PRUNESERVE_REDIS_URL=self.redis_url,
            PRUNESERVE_ARTIFACTS_DIR=str(self.artifacts_dir),
            PRUNESERVE_MODELS_DIR=str(self.models_dir),
            PRUNESERVE_DATA_DIR=str(self.data_dir),
            PRUNESERVE_API_KEYS=f"{self.api_key}:alice,{self.other_api_key}:bob",
            PRUNESERVE_MAX_UPLOAD_BYTES=str(1024 * 1024),
            PRUNESERVE_METRICS_TOKEN=self.metrics_token,
            PRUNESERVE_HEARTBEAT_S="1",
        )
        return env

    def _spawn(
        self, name: str, args: list[str], env: dict, log: str | None = None, raw: bool = False
    ) -> subprocess.Popen:
        cmd = args if raw else [sys.executable, "-m", "clients.cli.main", *args]
        out = open(self.root / (log or f"{name}.log"), "ab")  # noqa: SIM115 (closed by the OS)
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def _stop(self, name: str, sig: signal.Signals) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if sig == signal.SIGKILL:
            _reap_group(proc.pid)


def prepare_dirs(models_dir: Path, data_dir: Path, archs: tuple[str, ...] = ("llama",)) -> None:
    """The tiny model of each of `archs` (`TINY_MODEL` for llama, else tiny-<arch>) in
    `models_dir`, and WikiText-2 valid/test (~50 KB each) under `data_dir`."""
    from tests.support.corpus import write_wikitext
    from tests.support.tiny_models import make_tiny_model

    models_dir.mkdir(parents=True, exist_ok=True)
    for arch in archs:
        make_tiny_model(arch, models_dir / (TINY_MODEL if arch == "llama" else f"tiny-{arch}"))
    write_wikitext(data_dir / "wikitext-2-raw", SHARED_WIKITEXT, CORPUS_BYTES)


def _reap_group(pgid: int) -> None:
    """Wait until no process of the killed group is left (pool children die with it)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
