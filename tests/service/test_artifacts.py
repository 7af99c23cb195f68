"""Artifact listing, safe lookup and the streamed tar."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from service.artifacts import artifact_file, byte_range, list_artifacts, tar_stream


def test_list_lookup_and_tar(tmp_path):
    job = tmp_path / "job"
    (job / "sub").mkdir(parents=True)
    (job / "a.bin").write_bytes(b"x" * 1000)
    (job / "sub" / "b.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("secret")
    listed = [a.model_dump() for a in list_artifacts(job)]
    assert [a["path"] for a in listed] == ["a.bin", "sub/b.json"]
    assert listed[0]["sha256"] == hashlib.sha256(b"x" * 1000).hexdigest()
    assert artifact_file(job, listed, "a.bin")[0] == (job / "a.bin").resolve()
    for bad in ("../secret.txt", "/etc/passwd", "sub/../../secret.txt", "missing"):
        assert artifact_file(job, listed, bad) is None
    data = b"".join(tar_stream(job, listed, "pfx"))
    assert len(data) % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["pfx/a.bin", "pfx/sub/b.json"]
        assert tar.extractfile("pfx/a.bin").read() == b"x" * 1000


def test_listed_entry_pointing_outside_is_refused(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    forged = [{"path": "../secret.txt", "size": 6, "sha256": "0"}]
    assert artifact_file(job, forged, "../secret.txt") is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", (0, 9)),
        ("bytes=5-", (5, 9)),
        ("bytes=-3", (7, 9)),
        ("bytes=0-99", (0, 9)),
        ("bytes=20-", "unsatisfiable"),
        ("bytes=-0", "unsatisfiable"),
        ("bytes=3-1", None),  # invalid: ignored, the whole file is sent
        ("bytes=1-2,4-5", None),  # several ranges: the whole file
        ("items=1-2", None),
    ],
)
def test_byte_range_of_a_ten_byte_file(header, expected):
    assert byte_range(header, 10) == expected
