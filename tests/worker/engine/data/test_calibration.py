"""Calibration windows drawn exactly as the reference loaders; datasets resolved or refused
with a message naming the path.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from worker.engine.data.calibration import (
    calibration_ids,
    calibration_text,
    calibration_windows,
    eval_ids,
    read_rows,
    resolve_dataset,
    tokenize,
)
from worker.engine.data.datasets import wikitext_text
from worker.engine.errors import CalibrationError

REPO = Path(__file__).resolve().parents[4]
# the raw WikiText-2 files, when a ../shared/data sits beside this checkout (or its worktrees)
RAW_WIKITEXT = next(
    (
        p
        for p in (
            REPO.parent / "shared/data/wikitext-2-raw",
            REPO.parents[1] / "shared/data/wikitext-2-raw",
        )
        if p.is_dir()
    ),
    None,
)


def reference_windows(ids: torch.Tensor, nsamples: int, seqlen: int, seed: int):
    """get_wikitext2 / get_c4 of locuslab/wanda: the global `random`, seeded once."""
    random.seed(seed)
    out = []
    for _ in range(nsamples):
        i = random.randint(0, ids.shape[1] - seqlen - 1)
        j = i + seqlen
        out.append(ids[:, i:j])
    return torch.cat(out)


@pytest.mark.parametrize(("nsamples", "seqlen", "seed"), [(4, 32, 0), (16, 100, 7), (3, 999, 1)])
def test_windows_equal_the_reference_loader(nsamples, seqlen, seed):
    ids = torch.arange(5, 1005).reshape(1, -1)  # distinct ids: a window names its start
    got = calibration_windows(ids, nsamples, seqlen, seed)
    assert got.shape == (nsamples, seqlen)
    assert torch.equal(got, reference_windows(ids, nsamples, seqlen, seed))


def test_seed_changes_windows_and_is_deterministic():
    ids = torch.arange(2000).reshape(1, -1)
    a, b = calibration_windows(ids, 8, 64, 0), calibration_windows(ids, 8, 64, 1)
    assert not torch.equal(a, b)
    assert torch.equal(a, calibration_windows(ids, 8, 64, 0))
    assert (a[:, 1:] - a[:, :-1] == 1).all()  # contiguous slices of the text


def test_text_just_long_enough_and_too_short():
    ids = torch.arange(33).reshape(1, -1)
    assert torch.equal(calibration_windows(ids, 2, 32, 0), ids[:, :32].repeat(2, 1))
    with pytest.raises(CalibrationError, match="32 tokens; seqlen 32 needs at least 33"):
        calibration_windows(ids[:, :32], 2, 32, 0)


def test_windows_from_a_text_file_through_the_tokenizer(tiny_model_dir, calib_file):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    text = calibration_text(calib_file)
    assert text == calib_file.read_text()  # a .txt file is used whole, as the reference
    ids = tokenize(tok, text)
    assert ids.shape == (1, len(text))  # the tiny tokenizer is one token per character
    got = calibration_windows(ids, 4, 32, 0)
    assert torch.equal(got, reference_windows(ids, 4, 32, 0))
    random.seed(0)
    starts = [random.randint(0, len(text) - 33) for _ in range(4)]
    expected = torch.cat([tokenize(tok, text[i : i + 32]) for i in starts])
    assert torch.equal(got, expected)


def test_tokenize_gives_the_ids_of_a_tokenizer_call(tiny_model_dir, calib_file):
    """The backend encoder path equals tokenizer(text), with a BOS template and with
    truncation and padding preset in the backend (a call turns both off)."""
    from tokenizers import processors

    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    text = calib_file.read_text()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<1> $A", special_tokens=[("<1>", 1)]
    )
    tok.backend_tokenizer.enable_truncation(max_length=7)
    tok.backend_tokenizer.enable_padding(length=9999, pad_id=3)
    ids = tokenize(tok, text)
    tok.model_max_length = int(1e30)
    assert torch.equal(ids, tok(text, return_tensors="pt").input_ids)
    assert ids.shape == (1, len(text) + 1) and ids[0, 0] == 1


def test_missing_data_file_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "calib.txt"
    with pytest.raises(CalibrationError, match=str(missing)):
        resolve_dataset(str(missing), "calibration")


def test_named_dataset_resolves_in_the_data_dir_or_names_the_missing_path(tmp_path):
    with pytest.raises(CalibrationError) as exc:
        resolve_dataset("wikitext2", "calibration", data_dir=tmp_path)
    assert str(tmp_path / "wikitext-2-raw" / "valid.txt") in str(exc.value)
    (tmp_path / "wikitext-2-raw").mkdir()
    for split in ("valid", "test"):
        (tmp_path / "wikitext-2-raw" / f"{split}.txt").write_text(f"{split} text\n")
    assert resolve_dataset("wikitext2", "calibration", tmp_path).name == "valid.txt"
    assert resolve_dataset("wikitext2", "evaluation", tmp_path).name == "test.txt"


def test_unknown_dataset_lists_what_is_allowed():
    with pytest.raises(CalibrationError, match="allowed: wikitext2, c4"):
        resolve_dataset("imagenet", "calibration")


def test_uploads_resolve_by_id_only(tmp_path):
    (tmp_path / "abc123.jsonl").write_text('{"text": "hi"}\n')
    assert resolve_dataset("upload:abc123", "calibration", upload_dir=tmp_path).suffix == ".jsonl"
    for bad in ("upload:missing", "upload:../abc123"):
        with pytest.raises(CalibrationError, match="not found"):
            resolve_dataset(bad, "calibration", upload_dir=tmp_path)


def test_jsonl_and_gzip_rows(tmp_path):
    rows = ["first row", "second\nrow", ""]
    jl = tmp_path / "d.jsonl"
    jl.write_text("".join(json.dumps({"text": r, "id": i}) + "\n" for i, r in enumerate(rows)))
    gz = tmp_path / "d.json.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write(jl.read_text())
    assert read_rows(jl) == rows and read_rows(gz) == rows
    assert calibration_text(jl) == " ".join(rows)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"content": "no text field"}\n')
    with pytest.raises(CalibrationError, match="bad.jsonl"):
        calibration_text(bad)


def test_eval_ids_join_rows_with_blank_lines(tiny_model_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    path = tmp_path / "test.txt"
    path.write_text("ab\n\ncd\n")
    assert read_rows(path) == ["ab\n", "", "cd\n"]
    assert torch.equal(eval_ids(tok, path), tok("ab\n\n\n\n\ncd\n", return_tensors="pt").input_ids)


def reference_c4_windows(tok, rows: list[str], nsamples: int, seqlen: int, seed: int):
    """get_c4 of locuslab/wanda: per sample, draw documents until one is longer than seqlen
    tokens, then a random window inside it (the global `random`, seeded once)."""
    random.seed(seed)
    out = []
    for _ in range(nsamples):
        while True:
            enc = tok(rows[random.randint(0, len(rows) - 1)], return_tensors="pt").input_ids
            if enc.shape[1] > seqlen:
                break
        i = random.randint(0, enc.shape[1] - seqlen - 1)
        out.append(enc[:, i : i + seqlen])
    return torch.cat(out)


def test_jsonl_windows_are_drawn_per_document_as_the_c4_loader(tiny_model_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    docs = [f"doc {k}: " + "short" if k % 3 else f"document {k} " * (5 + k) for k in range(30)]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    got = calibration_ids(tok, str(path), path, 6, 40, 3)
    assert torch.equal(got, reference_c4_windows(tok, docs, 6, 40, 3))
    assert not torch.equal(got, calibration_ids(tok, str(path), path, 6, 40, 4))
    with pytest.raises(CalibrationError, match="no document of more than seqlen 4000"):
        calibration_ids(tok, str(path), path, 2, 4000, 0)


def test_text_files_are_one_long_text(tiny_model_dir, calib_file):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    ids = tokenize(tok, calib_file.read_text())
    got = calibration_ids(tok, str(calib_file), calib_file, 4, 32, 0)
    assert torch.equal(got, reference_windows(ids, 4, 32, 0))


def hub_wikitext_rows(path: Path) -> list[str]:
    """The rows Hugging Face's `wikitext` builder yields for a raw file: each line with its
    newline, a blank line (" \n" in WikiText) as an empty row."""
    with path.open(encoding="utf-8") as f:
        return [row if row.strip() else "" for row in f]


WIKITEXT_SAMPLE = " \n = Valkyria = \n \n Senjō no Valkyria 3 : <unk> Chronicles . \n \n \n"


def test_hub_rows_and_the_raw_file_are_one_token_stream(tiny_model_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    path = tmp_path / "valid.txt"
    path.write_text(WIKITEXT_SAMPLE * 20, encoding="utf-8")
    rows = hub_wikitext_rows(path)
    assert rows[:3] == ["", " = Valkyria = \n", ""]
    assert wikitext_text(rows) == path.read_text(encoding="utf-8")
    from_file = calibration_ids(tok, "wikitext2", path, 4, 32, 0)
    assert torch.equal(calibration_ids(tok, "wikitext2", rows, 4, 32, 0), from_file)
    assert torch.equal(eval_ids(tok, rows), eval_ids(tok, path))


@pytest.mark.skipif(RAW_WIKITEXT is None, reason="no ../shared/data/wikitext-2-raw here")
@pytest.mark.parametrize("split", ["valid", "test"])
def test_hub_rows_of_the_real_wikitext2_join_to_the_raw_file(split):
    path = RAW_WIKITEXT / f"{split}.txt"
    rows = hub_wikitext_rows(path)
    assert len(rows) == {"valid": 3760, "test": 4358}[split]  # the hub split's row count
    assert wikitext_text(rows) == path.read_text(encoding="utf-8")


def test_bad_jsonl_lines_are_named_by_line_number(tmp_path):
    path = tmp_path / "docs.jsonl"
    good = json.dumps({"text": "fine"})
    cases = {
        "{not json": "line 3: not JSON",
        '{"content": "x"}': 'line 3: no "text" field',
        '{"text": 42}': 'line 3: "text" is not a string',
        '["a list"]': 'line 3: no "text" field',
    }
    for bad, message in cases.items():
        path.write_text(f"{good}\n\n{bad}\n{good}\n")  # line 2 is blank (skipped, counted)
        with pytest.raises(CalibrationError) as exc:
            read_rows(path)
        assert f"docs.jsonl {message}" in str(exc.value), str(exc.value)


def test_named_datasets_need_a_data_dir_and_never_assume_one(tmp_path, monkeypatch):
    (tmp_path / "data" / "wikitext-2-raw").mkdir(parents=True)
    (tmp_path / "data" / "wikitext-2-raw" / "valid.txt").write_text("text\n")
    monkeypatch.chdir(tmp_path)  # a ./data exists, but the engine has no default of its own
    with pytest.raises(CalibrationError, match="no data directory was given"):
        resolve_dataset("wikitext2", "calibration")
