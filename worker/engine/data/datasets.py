"""Where a dataset's text lives (a named corpus in the data directory or on the hub, an upload,
a local file) and its rows. No torch here, so the CLI can check its inputs before slow imports.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

from service.schemas import NAMED_DATASETS
from worker.engine.errors import CalibrationError

_FILES = {
    # name: {split: path under the data directory}
    "wikitext2": {
        "calibration": "wikitext-2-raw/valid.txt",
        "evaluation": "wikitext-2-raw/test.txt",
    },
    "c4": {
        "calibration": "c4/c4-train.00000-of-01024.json.gz",
        "evaluation": "c4/c4-validation.00000-of-00008.json.gz",
    },
}
# the contract's named corpora (each has its own evaluation split: never held out)
NAMED = {name: _FILES[name] for name in NAMED_DATASETS}
# used only when the file is absent and the hub is reachable: load_dataset kwargs
HUB_SOURCES: dict[str, dict[str, dict[str, Any]]] = {
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
TEXT_SUFFIXES = (".txt", ".jsonl", ".json.gz", ".jsonl.gz")
UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def resolve_dataset(
    name: str, split: str, data_dir: Path | None = None, upload_dir: Path | None = None
) -> Path | list[str]:
    """A file path, or (hub fallback) the rows of the split. Raises CalibrationError."""
    if name in NAMED:
        return _named(name, split, data_dir)
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


def _named(name: str, split: str, data_dir: Path | None) -> Path | list[str]:
    """The corpus file in the data directory, else the same split from the hub. The engine
    has no default directory: its callers pass Settings.DATA_DIR (or the CLI's --data-dir)."""
    path = Path(data_dir) / NAMED[name][split] if data_dir is not None else None
    if path is not None and path.is_file():
        return path
    rows = _hub_rows(name, split)
    if rows is not None:
        return rows
    where = f"{path} not found" if path is not None else "no data directory was given"
    raise CalibrationError(
        f"dataset {name!r}: {where} (set the data directory, --data-dir or "
        "PRUNESERVE_DATA_DIR, to a folder laid out like <dir>/wikitext-2-raw/valid.txt), "
        "and the Hugging Face hub is not reachable"
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
    try:
        if source.name.endswith(".txt"):
            lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
            return [line if line.strip() else "" for line in lines]
        opener = gzip.open if source.name.endswith(".gz") else open
        with opener(source, "rt", encoding="utf-8") as fh:
            return [_json_text(source, n, line) for n, line in enumerate(fh, 1) if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"cannot read {source}: {type(exc).__name__}: {exc}") from exc


def _json_text(source: Path, n: int, line: str) -> str:
    """The `text` of JSON line `n` (counted from 1, blank lines too, as an editor shows it)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{source.name} line {n}: not JSON ({exc.msg})") from None
    if not isinstance(row, dict) or "text" not in row:
        raise CalibrationError(f'{source.name} line {n}: no "text" field (one object per line)')
    if not isinstance(row["text"], str):
        raise CalibrationError(f'{source.name} line {n}: "text" is not a string')
    return row["text"]


def calibration_text(source: Path | list[str]) -> str:
    """The one long text to draw windows from: a .txt file as is, WikiText rows from the hub
    joined back into that same file's text, JSON-lines rows joined by spaces."""
    if isinstance(source, Path) and source.name.endswith(".txt"):
        try:
            return source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"cannot read {source}: {exc}") from exc
    if isinstance(source, list):
        return wikitext_text(source)
    return " ".join(read_rows(source))


def wikitext_text(rows: list[str]) -> str:
    """The raw WikiText file the hub's rows came from: its builder yields every line with its
    newline, and a blank line (" \\n" in WikiText's raw files) as an empty row."""
    return "".join(row or " \n" for row in rows)
