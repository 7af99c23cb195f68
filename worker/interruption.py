"""The note an interrupted attempt leaves beside its checkpoints (Redis was unreachable, so it
could record nothing): the next delivery resumes without counting a new attempt."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from service.job_record import JobRecord
from service.schemas import JobState, resume_dir

NOTE = "interrupted.json"


def leave_note(output: Path, owner: str, attempt: int, reason: str) -> None:
    """Attempt `attempt` of `owner` stopped for `reason`, not because its worker died."""
    path = resume_dir(output) / NOTE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(NOTE + ".tmp")
    tmp.write_text(json.dumps({"owner": owner, "attempt": attempt, "reason": reason}))
    tmp.replace(path)


def read_note(output: Path, rec: JobRecord) -> str | None:
    """The reason `rec`'s current attempt was interrupted, if it left a note; None otherwise
    (no note, or one of another attempt)."""
    try:
        note = json.loads((resume_dir(output) / NOTE).read_text())
    except (OSError, ValueError):
        return None
    mine = rec.state == JobState.running and (note.get("owner"), note.get("attempt")) == (
        rec.owner,
        rec.attempts,
    )
    return str(note.get("reason", "")) if mine else None


def remove_note(output: Path) -> None:
    (resume_dir(output) / NOTE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # only if the note was all there was
        resume_dir(output).rmdir()
