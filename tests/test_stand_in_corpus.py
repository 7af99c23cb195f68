"""The stand-in for WikiText-2 that the e2e tests use on a machine without ../shared/data
serves every test that the real files serve: prose in paragraphs, two different splits."""

from __future__ import annotations

from tests.support.corpus import write_wikitext
from tests.support.live_service import CORPUS_BYTES
from worker.engine.data.calibration import split_holdout


def test_the_stand_in_splits_into_training_and_held_out_paragraphs(tmp_path):
    out = tmp_path / "wikitext-2-raw"
    write_wikitext(out, tmp_path / "no-shared-data", CORPUS_BYTES)
    valid, test = (out / "valid.txt").read_text(), (out / "test.txt").read_text()
    assert len(valid) >= CORPUS_BYTES and len(test) >= CORPUS_BYTES and valid != test
    train, held, documents = split_holdout(out / "valid.txt", 0.1, seed=0)
    assert not documents and len(held) >= 10 and len(train) >= 9 * len(held) - 9
    # an upload of its first 60 KB, as the held-out e2e test makes, also splits
    (tmp_path / "upload.txt").write_bytes((out / "valid.txt").read_bytes()[:60000])
    assert split_holdout(tmp_path / "upload.txt", 0.1, seed=0)[1]


def test_real_files_beside_the_checkout_are_used_when_present(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    for split in ("valid", "test"):
        (shared / f"{split}.txt").write_text(f" = {split} = \n" * 1000)
    write_wikitext(tmp_path / "out", shared, 100)
    assert (tmp_path / "out" / "test.txt").read_text() == (" = test = \n" * 10)[:100]
