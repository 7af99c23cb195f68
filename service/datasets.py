"""Uploaded calibration text: stored as <UPLOADS_DIR>/<id>.<ext>, owned by one tenant."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import redis
from fastapi import UploadFile

from service.errors import ApiError
from service.jobs import now_iso
from service.schemas import DatasetPublic
from service.settings import Settings

SUFFIXES = (".txt", ".jsonl")
CHUNK = 1024 * 1024


class DatasetStore:
    """Writes uploads in chunks under the size limit and records their owner in Redis."""

    def __init__(self, r: redis.Redis, settings: Settings):
        self.r = r
        self.settings = settings

    async def save(self, tenant: str, upload: UploadFile) -> DatasetPublic:
        """Store the upload; 422 for a wrong type or content, 413 over the size limit."""
        filename = Path(upload.filename or "").name
        suffix = Path(filename).suffix.lower()
        if suffix not in SUFFIXES:
            raise ApiError(422, f"file {filename!r}: allowed types are .txt and .jsonl", "file")
        ds_id = uuid.uuid4().hex
        root = Path(self.settings.UPLOADS_DIR)
        root.mkdir(parents=True, exist_ok=True)
        path, partial = root / f"{ds_id}{suffix}", root / f".{ds_id}{suffix}.partial"
        digest, size = hashlib.sha256(), 0
        try:
            with partial.open("wb") as out:
                while chunk := await upload.read(CHUNK):
                    size += len(chunk)
                    if size > self.settings.MAX_UPLOAD_BYTES:
                        limit = self.settings.MAX_UPLOAD_BYTES
                        raise ApiError(
                            413, f"file is larger than the limit of {limit} bytes", "file"
                        )
                    digest.update(chunk)
                    out.write(chunk)
            _check_content(partial, suffix)
            partial.rename(path)
        finally:
            partial.unlink(missing_ok=True)
        record = DatasetPublic(
            id=ds_id, filename=filename, size=size, sha256=digest.hexdigest(), created_at=now_iso()
        )
        payload = {"tenant": tenant, **record.model_dump(mode="json")}
        self.r.set(f"ps:dataset:{ds_id}", json.dumps(payload))
        return record

    def owned_by(self, tenant: str, ds_id: str) -> bool:
        raw = self.r.get(f"ps:dataset:{ds_id}")
        return bool(raw) and json.loads(raw)["tenant"] == tenant


def _check_content(path: Path, suffix: str) -> None:
    """UTF-8 text; for .jsonl every line a JSON object with a string `text`."""
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
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ApiError(
                422, f'line {n} is not JSON; each line needs {{"text": ...}}', "file"
            ) from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise ApiError(422, f"line {n} has no string field 'text'", "file")
