"""Resumable, verified artifact download: `<name>.part` grows (Range from its size on
resume), its sha256 must match the server's listing, then it is renamed to `<name>`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from clients.errors import ConnectionFailed, IntegrityError, PruneServeError
from clients.transport import Transport
from service.schemas import Artifact

CHUNK = 1 << 20
PART_SUFFIX = ".part"


def local_path(dest: Path, artifact_path: str) -> Path:
    """Where an artifact lands under `dest`; refuses paths that would escape it."""
    rel = PurePosixPath(artifact_path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise PruneServeError(f"refusing artifact path {artifact_path!r}: not inside the job")
    return dest.joinpath(*rel.parts)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fetch_artifact(transport: Transport, job_id: str, artifact: Artifact, dest: Path) -> Path:
    """Download one artifact into `dest`, resuming its `.part` file; return the final path."""
    final = local_path(dest, artifact.path)
    if _matches(final, artifact):
        return final  # already downloaded and verified
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + PART_SUFFIX)
    url = f"/v1/jobs/{job_id}/artifacts/{quote(artifact.path)}"
    for attempt in range(transport.retries + 1):
        if attempt:
            transport.sleep_before(attempt)
        try:
            _fill(transport, url, part, artifact.size)
            break
        except ConnectionFailed:
            if attempt == transport.retries:
                raise  # the .part file stays: a later download resumes from it
    _verify(part, artifact)
    os.replace(part, final)
    return final


def _matches(path: Path, artifact: Artifact) -> bool:
    return (
        path.exists()
        and path.stat().st_size == artifact.size
        and sha256_file(path) == artifact.sha256
    )


def _fill(transport: Transport, url: str, part: Path, size: int) -> None:
    """Append to `part` until it holds `size` bytes, asking only for the missing range."""
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    if have == size:
        return
    headers = {"Range": f"bytes={have}-"} if have else {}
    with transport.stream(url, headers) as resp:
        if resp.status_code == 416:  # our .part does not fit the file: start over
            part.unlink()
            return _fill(transport, url, part, size)
        mode = "ab" if resp.status_code == 206 else "wb"  # 200: the server sent it whole
        with part.open(mode) as f:
            for chunk in resp.iter_bytes():  # as it arrives: an interruption keeps it
                f.write(chunk)


def _verify(part: Path, artifact: Artifact) -> None:
    """Size and sha256 against the listing; a bad file is deleted before raising."""
    size = part.stat().st_size
    actual = sha256_file(part)
    if size == artifact.size and actual == artifact.sha256:
        return
    part.unlink()
    raise IntegrityError(
        f"{artifact.path}: sha256 {actual} ({size} bytes) does not match the listed "
        f"{artifact.sha256} ({artifact.size} bytes); the bad file was deleted",
        path=artifact.path,
        expected=artifact.sha256,
        actual=actual,
    )
