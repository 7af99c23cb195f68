"""A finished job's files: listing with sha256, safe lookup, and a streamed tar of them all."""

from __future__ import annotations

import hashlib
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

from service.schemas import Artifact

CHUNK = 1024 * 1024
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


def list_artifacts(job_dir: Path) -> list[Artifact]:
    """Every regular file under `job_dir` (relative posix path, size, sha256), sorted."""
    items = []
    for path in sorted(p for p in Path(job_dir).rglob("*") if p.is_file() and not p.is_symlink()):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        rel = path.relative_to(job_dir).as_posix()
        items.append(Artifact(path=rel, size=path.stat().st_size, sha256=digest.hexdigest()))
    return items


def artifact_file(job_dir: Path, listed: list[dict], rel: str) -> tuple[Path, dict] | None:
    """The file for `rel` when it is a listed artifact inside `job_dir`; None otherwise."""
    entry = next((a for a in listed if a["path"] == rel), None)
    if entry is None:
        return None
    root = Path(job_dir).resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path, entry


def tar_stream(job_dir: Path, listed: list[dict], prefix: str) -> Iterator[bytes]:
    """A ustar/pax archive of the listed files, produced chunk by chunk (never all in memory)."""
    written = 0
    mtime = int(time.time())
    for entry in listed:
        found = artifact_file(job_dir, listed, entry["path"])
        if found is None:
            continue
        path, _ = found
        info = tarfile.TarInfo(name=f"{prefix}/{entry['path']}")
        info.size, info.mode, info.mtime = path.stat().st_size, 0o644, mtime
        header = info.tobuf(format=tarfile.PAX_FORMAT)
        yield header
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
        pad = (BLOCK - info.size % BLOCK) % BLOCK
        yield b"\0" * pad
        written += len(header) + info.size + pad
    end = 2 * BLOCK
    written += end
    yield b"\0" * (end + (RECORD - written % RECORD) % RECORD)
