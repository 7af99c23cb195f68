"""A finished job's files: listing with sha256, safe lookup, and a streamed tar of them all."""

from __future__ import annotations

import hashlib
import re
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from service.schemas import Artifact

CHUNK = 1024 * 1024
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
RANGE = re.compile(r"bytes=(\d*)-(\d*)")


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


def byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """The one range `bytes=a-b`, `bytes=a-` or `bytes=-n` asks for, as inclusive (start, end);
    None for no, an invalid or a multi-range header (the whole file is sent), "unsatisfiable"
    when it starts past the end."""
    m = RANGE.fullmatch((header or "").strip())
    if m is None or not any(m.groups()):
        return None
    first, last = m.groups()
    if not first:  # a suffix: the last n bytes
        n = int(last)
        return (max(0, size - n), size - 1) if n and size else "unsatisfiable"
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(int(last), size - 1) if last else size - 1


def tar_stream(
    job_dir: Path,
    listed: list[dict],
    prefix: str,
    read: Callable[[str], Iterator[bytes]] | None = None,
) -> Iterator[bytes]:
    """A ustar/pax archive of the listed files, produced chunk by chunk (never all in memory);
    `read(path)` gives a file's bytes when they are not under `job_dir` (a bucket)."""
    written = 0
    mtime = int(time.time())
    for entry in listed:
        chunks = read(entry["path"]) if read else _file_chunks(job_dir, listed, entry["path"])
        if chunks is None:
            continue
        info = tarfile.TarInfo(name=f"{prefix}/{entry['path']}")
        info.size, info.mode, info.mtime = entry["size"], 0o644, mtime
        header = info.tobuf(format=tarfile.PAX_FORMAT)
        yield header
        yield from chunks
        pad = (BLOCK - info.size % BLOCK) % BLOCK
        yield b"\0" * pad
        written += len(header) + info.size + pad
    end = 2 * BLOCK
    written += end
    yield b"\0" * (end + (RECORD - written % RECORD) % RECORD)


def _file_chunks(job_dir: Path, listed: list[dict], rel: str) -> Iterator[bytes] | None:
    found = artifact_file(job_dir, listed, rel)
    if found is None:
        return None
    return _read(found[0])


def _read(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
