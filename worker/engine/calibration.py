"""Calibration windows and evaluation text from named corpora, local files or uploads.

Windows are drawn as the reference loaders do, so results compare token for token.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

import torch

from worker.engine.errors import CalibrationError

NAMED = {
    # name: {split: path under DATA_DIR}
    "wikitext2": {
        "calibration": "wikitext-2-raw/valid.txt",
        "evaluation": "wikitext-2-raw/test.txt",
    },
    "c4": {
        "calibration": "c4/c4-train.00000-of-01024.json.gz",
        "evaluation": "c4/c4-validation.00000-of-00008.json.gz",
    },
}
HUB_SOURCES = {  # used only when the file is absent and the hub is reachable: load_dataset kwargs
    "wikitext2": {
        "calibration": dict(path="wikitext", name="wikitext-2-raw-v1", split="validation"),
        "evaluation": dict(path="wikitext", name="wikitext-2-raw-v1", split="test"),
    },
    "c4": {
        "calibration": dict(
            path="allenai/c4",
            data_files={"train": "en/c4-train.00000-of-01024.json.gz"},
            split="train",
        ),
        "evaluation": dict(
            path="allenai/c4",
            data_files={"validation": "en/c4-validation.00000-of-00008.json.gz"},
            split="validation",
        ),
    },
}
MAX_DRAWS_PER_SAMPLE = 100  # documents tried per sample before giving up (all too short)
TEXT_SUFFIXES = (".txt", ".jsonl", ".json.gz", ".jsonl.gz")
UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def resolve_dataset(
    name: str, split: str, data_dir: Path | None = None, upload_dir: Path | None = None
) -> Path | list[str]:
    """A file path, or (hub fallback) the rows of the split. Raises CalibrationError."""
    if name in NAMED:
        path = Path(data_dir or "data") / NAMED[name][split]
        if path.is_file():
            return path
        rows = _hub_rows(name, split)
        if rows is not None:
            return rows
        raise CalibrationError(
            f"dataset {name!r}: {path} not found (set the data directory, e.g. "
            "PRUNESERVE_DATA_DIR, to a folder laid out like <dir>/wikitext-2-raw/valid.txt), "
            "and the Hugging Face hub is not reachable"
        )
    if name.startswith("upload:"):
        uid = name.removeprefix("upload:")
        matches = (
            sorted(Path(upload_dir).glob(f"{uid}.*")) if upload_dir and UPLOAD_ID.match(uid) else []
        )
        if not matches:
            raise CalibrationError(f"uploaded dataset {uid!r} not found")
        return matches[0]
    path = Path(name).expanduser()
    if name.endswith(TEXT_SUFFIXES):
        if not path.is_file():
            raise CalibrationError(f"data file {path} not found")
        return path
    allowed = ", ".join(NAMED)
    raise CalibrationError(
        f"unknown dataset {name!r}; allowed: {allowed}, upload:<id>, or a .txt/.jsonl file"
    )


def _hub_rows(name: str, split: str) -> list[str] | None:
    if name not in HUB_SOURCES:
        return None
    try:
        from datasets import load_dataset

        return list(load_dataset(**HUB_SOURCES[name][split])["text"])
    except Exception:  # not installed, offline: the caller names the missing path
        return None


def read_rows(source: Path | list[str]) -> list[str]:
    """Rows of a corpus: lines of a .txt (as Hugging Face's wikitext rows), `text` of JSON lines."""
    if isinstance(source, list):
        return source
    name = source.name
    try:
        if name.endswith(".txt"):
            lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
            return [line if line.strip() else "" for line in lines]
        opener = gzip.open if name.endswith(".gz") else open
        with opener(source, "rt", encoding="utf-8") as fh:
            return [json.loads(line)["text"] for line in fh if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CalibrationError(f"cannot read {source}: {type(exc).__name__}: {exc}") from exc


def calibration_text(source: Path | list[str]) -> str:
    """The whole text to draw windows from: a .txt file as is; rows joined by spaces otherwise."""
    if isinstance(source, Path) and source.name.endswith(".txt"):
        try:
            return source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"cannot read {source}: {exc}") from exc
    return " ".join(read_rows(source))


def tokenize(tokenizer, text: str) -> torch.Tensor:
    """Token ids (1, N) of the whole text, tokenized once."""
    old = getattr(tokenizer, "model_max_length", None)
    tokenizer.model_max_length = int(1e30)  # silence the 'sequence too long' warning
    try:
        return tokenizer(text, return_tensors="pt").input_ids
    finally:
        tokenizer.model_max_length = old


def calibration_windows(ids: torch.Tensor, nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    """(nsamples, seqlen) windows: rng = Random(seed); i = randint(0, N - seqlen - 1)."""
    total = ids.shape[1]
    if total - seqlen - 1 < 0:
        raise CalibrationError(
            f"calibration text has {total} tokens; seqlen {seqlen} needs at least {seqlen + 1}"
        )
    rng = random.Random(seed)
    starts = [rng.randint(0, total - seqlen - 1) for _ in range(nsamples)]
    return torch.stack([ids[0, i : i + seqlen] for i in starts])


def document_windows(
    tokenizer, rows: list[str], nsamples: int, seqlen: int, seed: int
) -> torch.Tensor:
    """(nsamples, seqlen) windows as the reference C4 loader: per sample, draw documents until
    one is longer than seqlen tokens, then a random window inside it."""
    rng = random.Random(seed)
    windows = []
    for _ in range(nsamples):
        for _ in range(MAX_DRAWS_PER_SAMPLE):
            ids = tokenize(tokenizer, rows[rng.randint(0, len(rows) - 1)])
            if ids.shape[1] > seqlen:
                break
        else:
            raise CalibrationError(
                f"no document of more than seqlen {seqlen} tokens found in "
                f"{MAX_DRAWS_PER_SAMPLE} draws; use a smaller seqlen or longer documents"
            )
        i = rng.randint(0, ids.shape[1] - seqlen - 1)
        windows.append(ids[0, i : i + seqlen])
    return torch.stack(windows)


def calibration_ids(
    tokenizer, name: str, source: Path | list[str], nsamples: int, seqlen: int, seed: int
) -> torch.Tensor:
    """Calibration windows (nsamples, seqlen) as the reference loaders draw them: documents
    for C4 and JSON lines; one long text (a .txt read whole, or wikitext rows joined by
    spaces) otherwise."""
    by_document = name == "c4" or (isinstance(source, Path) and not source.name.endswith(".txt"))
    if by_document:
        rows = [r for r in read_rows(source) if r.strip()]
        if not rows:
            raise CalibrationError(f"calibration data {name!r} has no text")
        return document_windows(tokenizer, rows, nsamples, seqlen, seed)
    ids = tokenize(tokenizer, calibration_text(source))
    return calibration_windows(ids, nsamples, seqlen, seed)


def eval_ids(tokenizer, source: Path | list[str]) -> torch.Tensor:
    """Evaluation token ids (1, N): rows joined with '\\n\\n', tokenized once."""
    return tokenize(tokenizer, "\n\n".join(read_rows(source)))
