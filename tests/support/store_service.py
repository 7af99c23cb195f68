"""A deployment with no shared directory: SeaweedFS as the artifact store, an api that streams
and one that redirects to presigned URLs, and workers that each have a scratch directory of
their own (named workers, started and stopped one by one)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.support.live_service import LiveService, _free_port
from tests.support.s3_server import ADMIN, READER, S3Server
from tests.support.slow_link import SlowLink

BUCKET = "pruneserve-test"


class StoreService(LiveService):
    """LiveService on a bucket: `url` streams downloads, `redirect_url` redirects them;
    start_worker(name, creds=ADMIN, slow=False) gives each worker its scratch dir
    root/scratch-<name>; with `slow` it reaches S3 through `link` (rate set by the test)."""

    s3: S3Server
    link: SlowLink
    redirect_url: str = ""

    @classmethod
    def start_on(cls, root: Path, s3: S3Server) -> StoreService:
        svc = cls(root=Path(root))
        svc.s3 = s3
        svc.link = SlowLink(("127.0.0.1", int(s3.endpoint.rsplit(":", 1)[1])))
        s3.client().create_bucket(Bucket=BUCKET)
        try:
            svc._prepare_dirs()
            svc._start_redis()
            svc.env = svc._base_env()
            svc.env.update(
                s3.env(),
                PRUNESERVE_ARTIFACTS_URL=f"s3://{BUCKET}/ps",
                PRUNESERVE_S3_PART_BYTES=str(5 * 1024 * 1024),
            )
            api_env = {**svc.env, "PRUNESERVE_ARTIFACTS_DIR": str(root / "api-spool")}
            # the redirecting api queues its jobs on "ro", which only the read-only worker takes
            for name, mode, queue in (("api", "stream", "gpu"), ("api-redirect", "redirect", "ro")):
                port = _free_port()
                url = f"http://127.0.0.1:{port}"
                svc.url, svc.redirect_url = (
                    (url, svc.redirect_url) if name == "api" else (svc.url, url)
                )
                env = {**api_env, "PRUNESERVE_ARTIFACT_DOWNLOAD": mode, "PRUNESERVE_QUEUE": queue}
                svc._spawn(name, ["api", "--host", "127.0.0.1", "--port", str(port)], env)
        except BaseException:
            svc.close()
            raise
        return svc

    def start_worker(
        self, name: str = "a", creds: tuple[str, str] = ADMIN, slow: bool = False, queue="gpu"
    ):
        self.worker_starts += 1
        env = {**self.env, **self.s3.env(creds)}
        env["PRUNESERVE_ARTIFACTS_DIR"] = str(self.scratch(name))
        if slow:
            env["PRUNESERVE_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{self.link.port}"
        args = ["worker", "--queues", queue, "--concurrency", "1", f"--hostname={name}@%h"]
        return self._spawn(
            f"worker-{name}", args, env, log=f"worker-{name}-{self.worker_starts}.log"
        )

    def wait_workers(self, n: int, timeout: float = 120) -> None:
        """Until `n` workers consume (each has a heartbeat), so jobs can go to each of them."""
        r = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + timeout
        while len(list(r.scan_iter("ps:worker:*"))) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {n} workers after {timeout}s; see {self.root}")
            time.sleep(0.2)

    def scratch(self, name: str) -> Path:
        return self.root / f"scratch-{name}"

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        self._stop(name, sig)

    def close(self) -> None:
        """SIGTERM to every process at once, then wait for each (SIGKILL after 20 s)."""
        procs = [p for p in self.procs.values() if p.poll() is None]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        self.procs.clear()
        self.link.close()


def start_store_service(root: Path) -> StoreService:
    """SeaweedFS, redis, both apis, workers `a` (reaching S3 through `link`) and `b` on queue
    gpu, and worker `ro` (read-only credentials) on queue ro; ready to take jobs."""
    s3 = S3Server.start(root / "s3")
    try:
        svc = StoreService.start_on(root, s3)
        svc.start_worker("a", slow=True)  # through `link`, at full speed until a test slows it
        svc.start_worker("b")
        svc.start_worker("ro", creds=READER, queue="ro")  # may read the bucket, not write
        svc.wait_ready()
        svc.wait_workers(3)
    except BaseException:
        s3.stop()
        raise
    return svc
