"""Downloads from the live service: verified round trip, resume with Range, corruption caught."""

from __future__ import annotations

import hashlib
import json

import pytest

from clients.errors import IntegrityError


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _largest(client, job):
    return max(client.artifacts(job.id), key=lambda a: a.size)


def test_download_round_trip_verifies_every_file(client, done_job, tmp_path):
    listed = client.artifacts(done_job.id)
    paths = client.download(done_job.id, tmp_path / "ckpt")
    assert sorted(p.name for p in paths) == sorted(a.path for a in listed)
    for a in listed:
        f = tmp_path / "ckpt" / a.path
        assert f.stat().st_size == a.size and _sha(f) == a.sha256
    assert not list((tmp_path / "ckpt").glob("*.part"))
    report = json.loads((tmp_path / "ckpt" / "pruning_report.json").read_text())
    assert report["sparsity"] == pytest.approx(done_job.summary.sparsity)


def test_truncated_part_file_resumes_with_range(proxied, proxy, done_job, tmp_path):
    big = _largest(proxied, done_job)
    whole = proxied.download(done_job.id, tmp_path / "ref")
    data = next(p for p in whole if p.name == big.path).read_bytes()
    dest = tmp_path / "resume"
    dest.mkdir()
    half = len(data) // 2
    (dest / f"{big.path}.part").write_bytes(data[:half])
    proxy.requests.clear()
    proxied.download(done_job.id, dest)
    gets = proxy.seen("GET", f"/artifacts/{big.path}")
    assert [(g.headers.get("range"), g.status) for g in gets] == [(f"bytes={half}-", 206)]
    assert _sha(dest / big.path) == big.sha256
    assert not (dest / f"{big.path}.part").exists()


def test_interrupted_transfer_resumes_and_verifies(proxied, proxy, done_job, tmp_path):
    big = _largest(proxied, done_job)
    proxy.break_next("truncate", "GET", f"/artifacts/{big.path}")
    proxied.download(done_job.id, tmp_path)
    gets = proxy.seen("GET", f"/artifacts/{big.path}")
    assert len(gets) == 2 and "range" not in gets[0].headers
    start = int(gets[1].headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start < big.size and gets[1].status == 206
    assert _sha(tmp_path / big.path) == big.sha256


def test_corrupted_part_file_is_detected_and_deleted(client, done_job, tmp_path):
    big = _largest(client, done_job)
    part = tmp_path / f"{big.path}.part"
    part.write_bytes(b"\0garbage" * (big.size // 16))
    with pytest.raises(IntegrityError) as exc:
        client.download(done_job.id, tmp_path)
    assert exc.value.path == big.path and exc.value.expected == big.sha256
    assert not part.exists() and not (tmp_path / big.path).exists()
    client.download(done_job.id, tmp_path)  # a fresh attempt starts over and succeeds
    assert _sha(tmp_path / big.path) == big.sha256


def test_corrupted_transfer_is_detected(proxied, proxy, done_job, tmp_path):
    big = _largest(proxied, done_job)
    proxy.break_next("corrupt", "GET", f"/artifacts/{big.path}")
    with pytest.raises(IntegrityError, match="does not match"):
        proxied.download(done_job.id, tmp_path)
    assert not (tmp_path / big.path).exists()
    assert not (tmp_path / f"{big.path}.part").exists()


def test_verified_files_are_not_fetched_again(proxied, proxy, done_job, tmp_path):
    proxied.download(done_job.id, tmp_path)
    proxy.requests.clear()
    proxied.download(done_job.id, tmp_path)
    assert [r.path for r in proxy.requests] == [f"/v1/jobs/{done_job.id}/artifacts"]
