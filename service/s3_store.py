"""An S3-compatible bucket as the artifact store (boto3; AWS_* variables give credentials and
region). Large files go up in parts that a later attempt resumes: the unfinished upload is
found in the bucket itself and every part already there whose MD5/size match the local bytes
is kept, so a worker restarted on any host that has the file continues where it stopped.
Unfinished uploads are never listed as objects; every part carries a SHA-256 the server checks.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from service.artifact_store import CHUNK, StoreError

SHA_META = "sha256"  # x-amz-meta-sha256: the whole file's hex digest


class S3Store:
    remote = True

    def __init__(self, url: str, endpoint_url: str | None, part_bytes: int):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.where, self.part_bytes = url, part_bytes
        style = {"addressing_style": "path"} if endpoint_url else {}
        config = Config(signature_version="s3v4", s3=style, retries={"mode": "standard"})
        self.s3 = boto3.client("s3", endpoint_url=endpoint_url, config=config)

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _error(self, what: str, key: str, exc: Exception) -> StoreError:
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            reason = f"{err.get('Code', '?')} ({err.get('Message', '')})"
        else:
            reason = str(exc)
        return StoreError(f"cannot {what} s3://{self.bucket}/{self._key(key)}: {reason}")

    # -- writing -------------------------------------------------------------------------
    def put(
        self, key: str, file: Path, sha256: str, between: Callable[[], None] | None = None
    ) -> None:
        size = Path(file).stat().st_size
        for resume in (True, False):  # a resumed upload of other bytes is redone from scratch
            try:
                if self._complete(key, size, sha256):
                    return
                if size <= self.part_bytes:
                    self._single(key, Path(file), sha256)
                else:
                    self._multipart(key, Path(file), size, sha256, between, resume)
                if self._complete(key, size, sha256):
                    return
                self.s3.delete_object(Bucket=self.bucket, Key=self._key(key))
            except (ClientError, BotoCoreError) as exc:
                raise self._error("write", key, exc) from None
        raise StoreError(f"s3://{self.bucket}/{self._key(key)}: the stored object does not match")

    def _single(self, key: str, file: Path, sha256: str) -> None:
        with file.open("rb") as body:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=body,
                ChecksumAlgorithm="SHA256",
                Metadata={SHA_META: sha256},
            )

    def _complete(self, key: str, size: int, sha256: str) -> bool:
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return head["ContentLength"] == size and head.get("Metadata", {}).get(SHA_META) == sha256

    def _multipart(self, key: str, file: Path, size: int, sha256: str, between, resume) -> None:
        """Parts already in the newest unfinished upload that match the local bytes are kept;
        its metadata (the whole file's sha256) cannot be read back, so `put` checks it after."""
        k = self._key(key)
        upload_id, have = self._unfinished(k)
        if upload_id is not None and not resume:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=k, UploadId=upload_id)
            upload_id, have = None, {}
        if upload_id is None:
            upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=k, ChecksumAlgorithm="SHA256", Metadata={SHA_META: sha256}
            )["UploadId"]
        parts = []
        with file.open("rb") as f:
            for number in range(1, -(-size // self.part_bytes) + 1):
                if between:
                    between()
                data = f.read(self.part_bytes)
                md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
                sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
                if number in have and have[number] != (f'"{md5}"', len(data)):
                    # the file is not the one this upload was started for: start it over
                    self.s3.abort_multipart_upload(Bucket=self.bucket, Key=k, UploadId=upload_id)
                    return self._multipart(key, file, size, sha256, between, resume=False)
                if number not in have:
                    self.s3.upload_part(
                        Bucket=self.bucket,
                        Key=k,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=sha,
                    )
                parts.append({"PartNumber": number, "ETag": f'"{md5}"', "ChecksumSHA256": sha})
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=k, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )

    def _unfinished(self, k: str) -> tuple[str | None, dict[int, tuple[str, int]]]:
        """The newest unfinished upload of `k` and its parts (number -> (ETag, size))."""
        found = self.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=k).get("Uploads", [])
        uploads = sorted((u for u in found if u["Key"] == k), key=lambda u: u["Initiated"])
        if not uploads:
            return None, {}
        upload_id = uploads[-1]["UploadId"]
        pages = self.s3.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=k, UploadId=upload_id
        )
        parts = [p for page in pages for p in page.get("Parts", [])]
        return upload_id, {p["PartNumber"]: (p["ETag"], p["Size"]) for p in parts}

    def resumable_parts(self, key: str) -> int:
        """How many parts of an unfinished upload of `key` are already in the bucket."""
        try:
            return len(self._unfinished(self._key(key))[1])
        except (ClientError, BotoCoreError) as exc:
            raise self._error("list the unfinished upload of", key, exc) from None

    # -- reading -------------------------------------------------------------------------
    def list(self, prefix: str) -> dict[str, int]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        n = len(self.prefix)
        return {o["Key"][n:]: o["Size"] for page in pages for o in page.get("Contents", [])}

    def stream(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Asks for the object at once (a StoreError is raised here, before any byte is sent);
        the body is then read chunk by chunk."""
        wanted = f"bytes={start}-{'' if end is None else end}"
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._key(key), Range=wanted)["Body"]
        except (ClientError, BotoCoreError) as exc:
            raise self._error("read", key, exc) from None
        return _chunks(body)

    def fetch(self, key: str, dest: Path) -> None:
        tmp = Path(dest).with_name(Path(dest).name + ".partial")
        try:
            self.s3.download_file(self.bucket, self._key(key), str(tmp))
        except (ClientError, BotoCoreError) as exc:
            raise self._error("read", key, exc) from None
        os.replace(tmp, dest)

    def delete_prefix(self, prefix: str) -> None:
        try:
            self._delete_prefix(prefix)
        except (ClientError, BotoCoreError) as exc:
            raise self._error("delete", prefix, exc) from None

    def _delete_prefix(self, prefix: str) -> None:
        k = self._key(prefix)
        keys = [{"Key": self.prefix + rel} for rel in self.list(prefix)]
        for i in range(0, len(keys), 1000):
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[i : i + 1000]})
        for u in self.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=k).get("Uploads", []):
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"])

    def presign(self, key: str, expires_s: int) -> str | None:
        params = {"Bucket": self.bucket, "Key": self._key(key)}
        return self.s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)


def _chunks(body) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()
