"""Load test of the job-status API on loopback: N concurrent pollers of GET /v1/jobs/{id}.

    python benchmarks/api_load.py [--pollers 100 10] [--duration 20] [--api-workers 2]

Starts its own redis-server and `pruneserve api` (production settings, a real API key), saves
one finished job, then for each poller count runs that many keep-alive connections for
`--duration` seconds (bounded by `--max-requests` too) and reports throughput and latency
percentiles. The generator is raw asyncio HTTP/1.1 (uvloop when installed) and reports its own
CPU use, so it can be seen not to be the bottleneck. Writes benchmarks/results/api_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WARMUP_S = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


class Stack:
    """redis-server and `pruneserve api` in a temporary directory; close() stops both."""

    def __init__(self, api_workers: int, extra_env: dict[str, str], api_root: Path = ROOT):
        self.dir = Path(tempfile.mkdtemp(prefix="ps-apiload-"))
        self.key = secrets.token_hex(16)
        self.redis_port, self.api_port = free_port(), free_port()
        self.procs: list[subprocess.Popen] = []
        redis_cmd = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        self._spawn([*redis_cmd, "--save", "", "--dir", str(self.dir)], os.environ)
        wait_port(self.redis_port)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PRUNESERVE_")},
            "PYTHONPATH": str(api_root),
            "PRUNESERVE_ENV": "production",
            "PRUNESERVE_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "PRUNESERVE_API_KEYS": f"{self.key}:bench",
            "PRUNESERVE_ARTIFACTS_DIR": str(self.dir / "artifacts"),
            **extra_env,
        }
        api = [sys.executable, "-m", "clients.cli.main", "api", "--port", str(self.api_port)]
        self._spawn([*api, "--workers", str(api_workers)], self.env, cwd=api_root)
        wait_port(self.api_port)

    def _spawn(self, cmd: list[str], env, cwd: Path | None = None) -> None:
        log = open(self.dir / f"{Path(cmd[0]).name}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    def finished_job(self) -> str:
        """Save one succeeded job with a report summary, as a poller would see at the end."""
        import redis

        from service import job_state
        from service.jobs import JobStore, now
        from service.schemas import PruneSpec, ReportSummary
        from service.settings import Settings

        settings = Settings(REDIS_URL=self.env["PRUNESERVE_REDIS_URL"], ENV="development")
        store = JobStore(redis.Redis.from_url(settings.REDIS_URL), settings)
        spec = PruneSpec(model="org/model", method="sparsegpt", sparsity="2:4")
        rec, _ = store.create("bench", spec)
        claim = lambda r: job_state.claim(r, "w", now(), max_attempts=3, cancel_requested=False)  # noqa: E731
        store.update(rec.id, claim)
        stages = {"load": 1.2, "calibrate": 3.4, "prune": 56.7, "eval_pruned": 20.1, "save": 2.0}
        summary = ReportSummary(sparsity=0.5, nm_ok=True, perplexity_pruned=112.5, stages_s=stages)
        store.update(rec.id, lambda r: job_state.succeed(r, "w", now(), summary, []))
        return rec.id

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds used so far by redis and by the api (all its processes)."""
        ticks = os.sysconf("SC_CLK_TCK")
        used = {"redis": 0.0, "api": 0.0}
        groups = {self.procs[0].pid: "redis", self.procs[1].pid: "api"}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            name = groups.get(int(fields[2]))  # the process group: each started its own
            if name:
                used[name] += (int(fields[11]) + int(fields[12])) / ticks
        return used

    def close(self) -> None:
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


async def poll(port: int, request: bytes, stop_at: float, record_from: float, out: list, budget):
    """One keep-alive connection sending `request` until `stop_at`; latencies (s) into `out`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    try:
        while (now := time.perf_counter()) < stop_at and budget[0] > 0:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if now >= record_from:
                budget[0] -= 1
                out.append(time.perf_counter() - now)
                errors += not head.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
    return errors


async def scenario(stack: Stack, request: bytes, pollers: int, duration: float, max_requests: int):
    port = stack.api_port
    start = time.perf_counter()
    record_from, stop_at = start + WARMUP_S, start + WARMUP_S + duration
    latencies: list[float] = []
    budget = [max_requests]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    polls = [poll(port, request, stop_at, record_from, latencies, budget) for _ in range(pollers)]
    tasks = [asyncio.ensure_future(p) for p in polls]
    await asyncio.sleep(max(0.0, record_from - time.perf_counter()))
    server0 = stack.cpu_s()
    errors = await asyncio.gather(*tasks)
    elapsed = min(time.perf_counter(), stop_at) - record_from
    server1 = stack.cpu_s()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    ms = sorted(x * 1000 for x in latencies)
    pick = lambda q: round(ms[min(len(ms) - 1, int(q * len(ms)))], 2)  # noqa: E731
    return {
        "pollers": pollers,
        "seconds": round(elapsed, 2),
        "requests": len(ms),
        "errors": sum(errors),
        "req_per_s": round(len(ms) / elapsed, 1),
        "p50_ms": pick(0.50),
        "p90_ms": pick(0.90),
        "p99_ms": pick(0.99),
        "max_ms": round(ms[-1], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "generator_cpu_share": round(cpu / (time.perf_counter() - start), 3),
        # CPU per request does not depend on what else runs on the machine: the fair figure
        **{
            f"{name}_cpu_ms_per_request": round((server1[name] - server0[name]) * 1000 / len(ms), 3)
            for name in server0
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pollers", type=int, nargs="+", default=[100, 10])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per scenario (20)")
    ap.add_argument("--max-requests", type=int, default=200_000, help="per scenario (200000)")
    ap.add_argument("--api-workers", type=int, default=1, help="uvicorn processes (1)")
    ap.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=True, help="(on)"
    )
    ap.add_argument("--label", default="", help="free text stored with the results")
    ap.add_argument("--api-root", type=Path, default=ROOT, help="checkout the api runs from")
    ap.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/api_load.json")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    env = {"PRUNESERVE_API_ACCESS_LOG": str(args.access_log).lower()}
    stack = Stack(args.api_workers, env, args.api_root)
    try:
        job_id = stack.finished_job()
        request = (
            f"GET /v1/jobs/{job_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {stack.key}\r\n\r\n"
        ).encode()
        load0 = os.getloadavg()[0]
        results = [
            asyncio.run(scenario(stack, request, n, args.duration, args.max_requests))
            for n in args.pollers
        ]
    finally:
        stack.close()
    report = {
        "what": "GET /v1/jobs/{id} of a succeeded job, keep-alive, loopback, generator on the "
        "same machine",
        "label": args.label,
        "api_workers": args.api_workers,
        "access_log": args.access_log,
        "cpus": os.cpu_count(),
        "load_average_before": round(load0, 2),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        print(
            f"{r['pollers']:>4} pollers: {r['req_per_s']:>7} req/s  p50 {r['p50_ms']} ms  "
            f"p99 {r['p99_ms']} ms  errors {r['errors']}  "
            f"generator CPU {r['generator_cpu_share']}  api CPU/request "
            f"{r['api_cpu_ms_per_request']} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
