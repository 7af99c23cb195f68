"""Read the records of a `.jsonl` (or `.jsonl.gz`) training file; a bad line is named."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from service.records import FORMATS, Record, RecordError, parse_record
from worker.engine.errors import CalibrationError


def read_records(source: Path) -> list[Record]:
    """Every record of the file, in order (blank lines skipped, counted in line numbers)."""
    opener = gzip.open if source.name.endswith(".gz") else open
    out = []
    try:
        with opener(source, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    out.append(_record(source, n, line))
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"cannot read {source}: {type(exc).__name__}: {exc}") from exc
    return out


def _record(source: Path, n: int, line: str) -> Record:
    where = f"{source.name} line {n}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        msg = f"{where}: not JSON ({exc.msg}); each line is one of {FORMATS}"
        raise CalibrationError(msg) from None
    try:
        return parse_record(row, where)
    except RecordError as exc:
        raise CalibrationError(str(exc)) from None
