"""Uploaded calibration text: streamed to <UPLOADS_DIR>/<id>.<ext>, owned by one tenant; with
a bucket as the artifact store it then goes to uploads/<id>.<ext> there (workers fetch it)."""

from __future__ import annotations

import errno
import hashlib
import json
import uuid
from pathlib import Path

import redis
from fastapi import Request

from service.artifact_store import StoreError, open_store
from service.errors import ApiError
from service.jobs import now_iso
from service.json_limits import JsonLimitError, loads_limited
from service.multipart import FilePart
from service.records import FORMATS, RecordError, parse_record
from service.schemas import DatasetPublic
from service.settings import Settings

SUFFIXES = (".txt", ".jsonl")


class DatasetStore:
    """Writes uploads in chunks under the size limit and records their owner in Redis."""

    def __init__(self, r: redis.Redis, settings: Settings):
        self.r = r
        self.settings = settings

    async def save(self, tenant: str, request: Request) -> DatasetPublic:
        """Stream the body's `file` part to disk; 422 for a wrong type or content, 413 as soon
        as it crosses MAX_UPLOAD_BYTES, 507 on a full disk, 503 when Redis cannot record it;
        a file that is refused never stays."""
        part = FilePart(request.headers.get("content-type", ""), "file")
        ds_id = uuid.uuid4().hex
        root = Path(self.settings.UPLOADS_DIR)
        partial = root / f".{ds_id}.partial"
        digest, size, suffix = hashlib.sha256(), 0, None
        try:
            root.mkdir(parents=True, exist_ok=True)
            with partial.open("wb") as out:
                async for chunk in request.stream():
                    for data in part.feed(chunk):
                        suffix = suffix or _suffix(part.filename)
                        size += len(data)
                        self._check_size(size)
                        digest.update(data)
                        out.write(data)
                part.finish()
            suffix = suffix or _suffix(part.filename)
            _check_content(partial, suffix)
            path = root / f"{ds_id}{suffix}"
            partial.rename(path)
            path = self._to_store(path, digest.hexdigest())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ApiError(
                    507, "no space left to store the upload; retry later", "file"
                ) from None
            raise
        finally:
            partial.unlink(missing_ok=True)
        record = DatasetPublic(
            id=ds_id,
            filename=Path(part.filename).name,
            size=size,
            sha256=digest.hexdigest(),
            created_at=now_iso(),
        )
        payload = {"tenant": tenant, **record.model_dump(mode="json")}
        try:
            self.r.set(f"ps:dataset:{ds_id}", json.dumps(payload))
        except BaseException:  # Redis down (503): a file without its record is never usable
            path.unlink(missing_ok=True)
            raise
        return record

    def _to_store(self, path: Path, sha256: str) -> Path:
        """Put the upload in a bucket store (the local copy goes); the local path otherwise."""
        store = open_store(self.settings)
        if not store.remote:
            return path
        try:
            store.put(f"uploads/{path.name}", path, sha256)
        except StoreError as exc:
            raise ApiError(503, f"the artifact store refused the upload: {exc}", "file") from None
        finally:
            path.unlink(missing_ok=True)
        return path

    def _check_size(self, size: int) -> None:
        limit = self.settings.MAX_UPLOAD_BYTES
        if size > limit:
            raise ApiError(413, f"file is larger than the limit of {limit} bytes", "file")

    def owned_by(self, tenant: str, ds_id: str) -> bool:
        raw = self.r.get(f"ps:dataset:{ds_id}")
        return bool(raw) and json.loads(raw)["tenant"] == tenant


def _suffix(filename: str | None) -> str:
    """The upload's type from its file name: .txt or .jsonl, else 422 before any byte is kept."""
    name = Path(filename or "").name
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise ApiError(422, f"file {name!r}: allowed types are .txt and .jsonl", "file")
    return suffix


def _check_content(path: Path, suffix: str) -> None:
    """UTF-8 text; for .jsonl every line a record in one of the formats of service/records.py."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ApiError(422, "file is not UTF-8 text", "file") from None
    if not text.strip():
        raise ApiError(422, "file is empty", "file")
    if suffix != ".jsonl":
        return
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = loads_limited(line)
        except JsonLimitError as exc:
            raise ApiError(422, f"line {n}: {exc}", "file") from None
        except json.JSONDecodeError:
            raise ApiError(
                422, f"line {n} is not JSON; each line is one of {FORMATS}", "file"
            ) from None
        try:
            parse_record(row, f"line {n}")
        except RecordError as exc:
            raise ApiError(422, str(exc), "file") from None
