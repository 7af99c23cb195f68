"""The artifact store on loopback: upload and download throughput of a checkpoint through a
SeaweedFS bucket (S3Store: multipart, SHA-256 per part) against copying the same files on
local disk, and the API's resident memory while it streams a 2 GB artifact from the bucket.

    python benchmarks/store_bench.py --model /work/models/smollm2 [--big-gb 2]

Starts its own SeaweedFS (the dev extra's `weed`), a private Redis and `pruneserve api`.
Writes benchmarks/results/store_bench.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.artifact_store import LocalStore  # noqa: E402
from service.s3_store import S3Store  # noqa: E402
from tests.support.s3_server import S3Server  # noqa: E402

MB = 1e6
PART = 64 * 1024 * 1024


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def throughput(s3: S3Store, model: Path, tmp: Path) -> dict:
    files = sorted(p for p in model.iterdir() if p.is_file())
    total = sum(p.stat().st_size for p in files)
    digests = {p.name: sha256(p) for p in files}  # also warms the page cache for every run
    local = LocalStore(tmp / "local")
    rows = {
        "local copy": timed(lambda: [local.put(f"m/{p.name}", p, "") for p in files]),
        "s3 upload": timed(lambda: [s3.put(f"m/{p.name}", p, digests[p.name]) for p in files]),
    }
    (tmp / "down").mkdir()
    rows["s3 download"] = timed(
        lambda: [s3.fetch(f"m/{p.name}", tmp / "down" / p.name) for p in files]
    )
    for p in files:  # what came back is what went up
        assert sha256(tmp / "down" / p.name) == digests[p.name], p.name
    return {
        "bytes": total,
        "files": len(files),
        "rows": {
            k: {"s": round(v, 2), "MB_per_s": round(total / MB / v, 1)} for k, v in rows.items()
        },
    }


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def api_memory(server: S3Server, s3: S3Store, tmp: Path, gb: float) -> dict:
    import httpx
    import redis

    from service.job_state import claim, succeed
    from service.jobs import JobStore, now
    from service.schemas import Artifact, PruneSpec
    from service.settings import Settings
    from tests.support.live_service import _free_port
    from tests.support.redis_server import redis_url

    big, size = tmp / "big.bin", int(gb * 1024**3)
    with big.open("wb") as f:
        for _ in range(size // (64 << 20)):
            f.write(os.urandom(64 << 20))
    digest = sha256(big)
    env = {
        **os.environ,
        **server.env(),
        "PYTHONPATH": str(ROOT),
        "PRUNESERVE_ENV": "development",
        "PRUNESERVE_REDIS_URL": redis_url(),
        "PRUNESERVE_ARTIFACTS_URL": "s3://bench/p",
        "PRUNESERVE_ARTIFACT_DOWNLOAD": "stream",
        "PRUNESERVE_ARTIFACTS_DIR": str(tmp / "api"),
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("PRUNESERVE_")})
    store = JobStore(redis.Redis.from_url(redis_url()), Settings())
    rec, _ = store.create("dev", PruneSpec(model="bench", method="magnitude", sparsity=0.5))
    job = f"jobs/{rec.id}/big.bin"
    upload_s = timed(lambda: s3.put(job, big, digest))
    store.update(rec.id, lambda r: claim(r, "bench", now(), max_attempts=1, cancel_requested=False))
    listed = [Artifact(path="big.bin", size=size, sha256=digest)]
    store.update(rec.id, lambda r: succeed(r, "bench", now(), None, listed))
    port = _free_port()
    cmd = [sys.executable, "-m", "clients.cli.main", "api", "--port", str(port), "--no-access-log"]
    api = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb(api.pid))
            time.sleep(0.05)

    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        idle = rss_kb(api.pid)
        threading.Thread(target=sample, daemon=True).start()
        h, got, t = hashlib.sha256(), 0, time.perf_counter()
        with httpx.stream(
            "GET",
            f"{url}/v1/jobs/{rec.id}/artifacts/big.bin",
            headers={"Authorization": "Bearer dev-key"},
            timeout=60,
        ) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes():
                h.update(chunk)
                got += len(chunk)
        seconds = time.perf_counter() - t
        stop.set()
        assert got == size and h.hexdigest() == digest
    finally:
        api.terminate()
        api.wait(timeout=20)
    return {
        "artifact_bytes": size,
        "upload_s": round(upload_s, 1),
        "stream_s": round(seconds, 1),
        "stream_MB_per_s": round(size / MB / seconds, 1),
        "api_rss_idle_MB": round(idle / 1024, 1),
        "api_rss_peak_MB": round(peak[0] / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("/work/models/smollm2"))
    ap.add_argument("--big-gb", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/store_bench.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="store-bench-"))
    server = S3Server.start(tmp / "s3", volume_mb=1024, volumes=8)
    try:
        os.environ.update(server.env())
        server.client().create_bucket(Bucket="bench")
        s3 = S3Store("s3://bench/p", server.endpoint, PART)
        result = {
            "model": str(args.model),
            "part_bytes": PART,
            "checkpoint": throughput(s3, args.model, tmp),
            "api_streaming": api_memory(server, s3, tmp, args.big_gb),
            "machine": f"{os.cpu_count()} cores, shared with other jobs",
            "seaweedfs": "weed server -s3, one volume server, 1 GiB volumes, loopback",
        }
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
