"""The job state machine: pure transitions on a JobRecord (no Redis, no clock of its own).

queued -> running -> succeeded | failed | cancelled; queued -> cancelled. A transition that
the state (or the caller's ownership) does not allow raises IllegalTransition.
"""

from __future__ import annotations

from datetime import datetime

from service.job_record import JobRecord
from service.schemas import Artifact, JobError, JobState, Progress, PruneSpec, ReportSummary

Q, R = JobState.queued, JobState.running


class IllegalTransition(Exception):
    """The job's state (or its owner) does not allow this change."""


def new_job(job_id: str, tenant: str, spec: PruneSpec, now: datetime) -> JobRecord:
    return JobRecord(id=job_id, tenant=tenant, spec=spec, created_at=now)


def claim(
    rec: JobRecord,
    owner: str,
    now: datetime,
    *,
    max_attempts: int,
    cancel_requested: bool,
    interrupted: bool = False,
) -> JobRecord:
    """A delivery takes the job: running under `owner`; cancelled when a cancel is pending;
    failed (WorkerLost) when the previous `max_attempts` starts all died. A running job whose
    attempt was `interrupted` (it stopped itself, e.g. Redis unreachable) goes on as the same
    attempt: only deaths count."""
    _require(rec, (Q, R), "claim")
    if cancel_requested:
        return _end(rec, JobState.cancelled, now)
    attempts = rec.attempts if interrupted and rec.state == R else rec.attempts + 1
    if attempts > max_attempts:
        error = JobError(
            type="WorkerLost",
            message=f"the worker running this job died {attempts - 1} time(s) (killed or "
            f"lost); giving up after PRUNESERVE_MAX_ATTEMPTS={max_attempts} attempts",
        )
        return _end(rec.model_copy(update={"attempts": attempts}), JobState.failed, now, error)
    progress = Progress(stage="starting", percent=0.0)
    return rec.model_copy(
        update={
            "state": R,
            "owner": owner,
            "started_at": now,
            "attempts": attempts,
            "progress": progress,
        }
    )


def progress(rec: JobRecord, owner: str, **fields: object) -> JobRecord:
    """Stage, layer i/N, percent, ETA or message of the job `owner` runs."""
    _require_owner(rec, owner, "progress")
    return rec.model_copy(update={"progress": Progress(**{**rec.progress.model_dump(), **fields})})


def succeed(
    rec: JobRecord, owner: str, now: datetime, summary: ReportSummary, artifacts: list[Artifact]
) -> JobRecord:
    _require_owner(rec, owner, "succeed")
    done = rec.model_copy(update={"summary": summary, "artifacts": artifacts})
    return _end(done, JobState.succeeded, now)


def fail(rec: JobRecord, owner: str, now: datetime, error: JobError) -> JobRecord:
    _require_owner(rec, owner, "fail")
    return _end(rec, JobState.failed, now, error)


def cancel(rec: JobRecord, now: datetime, owner: str | None = None) -> JobRecord:
    """A queued job (anyone may), or a running one by the process that runs it."""
    if owner is None:
        _require(rec, (Q,), "cancel")
    else:
        _require_owner(rec, owner, "cancel")
    return _end(rec, JobState.cancelled, now)


def _end(
    rec: JobRecord, state: JobState, now: datetime, error: JobError | None = None
) -> JobRecord:
    """The one way into a final state: finished_at, progress stage named after the state."""
    percent = 100.0 if state == JobState.succeeded else rec.progress.percent
    progress = rec.progress.model_copy(
        update={"stage": state.value, "percent": percent, "eta_s": None}
    )
    update = {"state": state, "finished_at": now, "progress": progress}
    if error is not None:
        update["error"] = error
    return rec.model_copy(update=update)


def _require(rec: JobRecord, states: tuple[JobState, ...], what: str) -> None:
    if rec.state not in states:
        allowed = " or ".join(s.value for s in states)
        raise IllegalTransition(
            f"cannot {what} job {rec.id}: it is {rec.state.value}, not {allowed}"
        )


def _require_owner(rec: JobRecord, owner: str, what: str) -> None:
    _require(rec, (R,), what)
    if rec.owner != owner:
        raise IllegalTransition(
            f"cannot {what} job {rec.id}: it is run by {rec.owner}, not {owner}"
        )
