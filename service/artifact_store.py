"""Where finished artifacts and uploads live: a local directory (the default) or an
S3-compatible bucket (PRUNESERVE_ARTIFACTS_URL=s3://bucket/prefix); one small interface.

Keys are relative posix paths: `jobs/<id>/<file>` for a job's files, `uploads/<id>.<ext>`
for calibration uploads.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from service.settings import Settings

CHUNK = 1024 * 1024


class StoreError(Exception):
    """The store refused or lost an operation; the message names the object and the reason."""


class ArtifactStore(Protocol):
    remote: bool  # False: files are read and served from the local directory itself
    where: str  # the store's URL or directory, for messages

    def put(
        self, key: str, file: Path, sha256: str, between: Callable[[], None] | None = None
    ) -> None:
        """Store `file` under `key`, complete or not at all (resuming a previous attempt);
        `between()` runs before each part of a long upload (a cancel check may raise)."""

    def list(self, prefix: str) -> dict[str, int]:
        """Complete objects under `prefix`: key -> size."""

    def stream(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes [start, end] (inclusive) of `key`, chunk by chunk."""

    def fetch(self, key: str, dest: Path) -> None:
        """Copy `key` to the local file `dest` (complete or not at all)."""

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object (and unfinished upload) under `prefix`."""

    def presign(self, key: str, expires_s: int) -> str | None:
        """A short-lived URL that serves GET `key` without credentials; None when local."""


class LocalStore:
    """The directory PRUNESERVE_ARTIFACTS_DIR: workers write in place, the API serves files."""

    remote = False

    def __init__(self, root: Path):
        self.root = Path(root)
        self.where = str(self.root)

    def path(self, key: str) -> Path | None:
        """The file for `key` when it stays inside the root; None otherwise."""
        root = self.root.resolve()
        path = (root / key).resolve()
        return path if path.is_relative_to(root) and path != root else None

    def put(
        self, key: str, file: Path, sha256: str, between: Callable[[], None] | None = None
    ) -> None:
        dest = self.path(key)
        if dest is None:
            raise StoreError(f"key {key!r} is outside {self.root}")
        if dest == Path(file).resolve():
            return  # written in place
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        shutil.copyfile(file, tmp)
        tmp.replace(dest)

    def list(self, prefix: str) -> dict[str, int]:
        base = self.path(prefix.rstrip("/"))
        if base is None or not base.is_dir():
            return {}
        root = self.root.resolve()
        files = (p for p in base.rglob("*") if p.is_file() and not p.is_symlink())
        return {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(files)}

    def stream(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self.path(key)
        if path is None:
            raise StoreError(f"key {key!r} is outside {self.root}")
        with path.open("rb") as f:
            f.seek(start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                chunk = f.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                left = None if left is None else left - len(chunk)
                yield chunk

    def fetch(self, key: str, dest: Path) -> None:
        src = self.path(key)
        if src is None or not src.is_file():
            raise StoreError(f"no object {key!r} in {self.root}")
        tmp = Path(dest).with_name(Path(dest).name + ".partial")
        shutil.copyfile(src, tmp)
        tmp.replace(dest)

    def delete_prefix(self, prefix: str) -> None:
        base = self.path(prefix.rstrip("/"))
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)

    def presign(self, key: str, expires_s: int) -> str | None:
        return None


def open_store(settings: Settings) -> ArtifactStore:
    """The store `settings` name (one per process and configuration)."""
    s = settings
    return _open(s.ARTIFACTS_URL, s.S3_ENDPOINT_URL, s.S3_PART_BYTES, s.ARTIFACTS_DIR)


@lru_cache(maxsize=8)
def _open(url: str, endpoint: str, part_bytes: int, root: Path) -> ArtifactStore:
    if not url:
        return LocalStore(root)
    from service.s3_store import S3Store

    return S3Store(url, endpoint or None, part_bytes)
