"""One delivery of a prune task: claim the job, run the engine, record the outcome.

Idempotent: a finished job is left alone, a job another live process runs is skipped, and a
job whose worker died is taken over until PRUNESERVE_MAX_ATTEMPTS starts have been used.
Redis unreachable for longer than PRUNESERVE_REDIS_RETRY_S interrupts the attempt: its
checkpoints stay, and the next delivery resumes from them without counting an attempt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

from service import job_state
from service.artifact_store import StoreError, open_store
from service.job_record import JobRecord
from service.job_state import IllegalTransition
from service.jobs import JobStore, now
from service.schemas import REPORT_FILE as REPORT_NAME
from service.schemas import JobError, JobState, PruneReport, PruneSpec, partial_dir, resume_dir
from service.settings import Settings
from worker import interruption
from worker.engine.errors import Cancelled, EngineError, Interrupted
from worker.heartbeat import Ticker
from worker.job_events import JobEvents
from worker.job_reporter import JobReporter
from worker.redis_retry import UNREACHABLE, wait_until_reachable
from worker.store_sync import fetch_uploads, publish

log = logging.getLogger(__name__)
HOST = socket.gethostname()


def owner_alive(owner: str | None) -> bool:
    """A job heartbeat owner `host:pid:nonce` is alive (checked directly when on this host)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    if host != HOST:
        return True  # its heartbeat key exists, and we cannot check another host's pids
    try:
        os.kill(int(rest.partition(":")[0]), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


class JobRunner:
    """Runs job `job_id` once in this process."""

    def __init__(self, store: JobStore, settings: Settings, job_id: str):
        self.store, self.settings, self.job_id = store, settings, job_id
        self.owner = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.out = Path(settings.jobs_dir) / job_id  # the store itself, or local scratch
        self.objects = open_store(settings)  # where finished artifacts go
        self.partial = partial_dir(self.out)
        self.events = JobEvents(store, job_id, settings.REDIS_RETRY_S)
        self.resumes: str | None = None  # why the previous attempt was interrupted
        self.attempt = 0  # the attempt this delivery runs, once claimed

    def run(self) -> str:
        """Returns the job's state after this delivery."""
        rec = self.store.get(self.job_id)
        if rec is None:
            log.warning("job %s does not exist; dropping the task", self.job_id)
            return "missing"
        if rec.state.terminal:
            log.info("job %s is already %s; nothing to do", self.job_id, rec.state.value)
            return rec.state.value
        if rec.state == JobState.running and self._running_elsewhere():
            log.info("job %s runs in another live process; this delivery is dropped", self.job_id)
            return "duplicate"
        beat = Ticker(
            lambda: self.store.beat_job(self.job_id, self.owner), self.settings.HEARTBEAT_S
        )
        self.store.beat_job(self.job_id, self.owner)
        beat.start()
        try:
            rec = self._claim()
            if rec is None or rec.state != JobState.running or rec.owner != self.owner:
                if rec is not None and rec.state.terminal:
                    self._cleanup()  # e.g. given up after MAX_ATTEMPTS: no checkpoints left
                return rec.state.value if rec else "missing"
            return self._execute(rec)
        finally:
            beat.stop()
            with contextlib.suppress(*UNREACHABLE):  # the key expires by itself
                self.store.clear_job_beat(self.job_id)

    def _running_elsewhere(self) -> bool:
        """Another live process holds the job; waits out a stale heartbeat of a dead one."""
        deadline = time.monotonic() + self.settings.HEARTBEAT_S * 6
        while time.monotonic() < deadline:
            owner = self.store.job_owner_alive(self.job_id)
            if not owner_alive(owner):
                return False
            time.sleep(min(1.0, self.settings.HEARTBEAT_S))
        return True

    def _claim(self) -> JobRecord | None:
        def claim(rec: JobRecord) -> JobRecord:
            if rec.state.terminal:  # finished meanwhile (another delivery, or cancelled)
                return rec
            cancel = self.store.cancel_requested(self.job_id)
            self.resumes = interruption.read_note(self.out, rec)
            return job_state.claim(
                rec,
                self.owner,
                now(),
                max_attempts=self.settings.MAX_ATTEMPTS,
                cancel_requested=cancel,
                interrupted=self.resumes is not None,
            )

        rec = self.events.redis(lambda: self.store.update(self.job_id, claim), "claiming it")
        interruption.remove_note(self.out)
        return rec

    def _execute(self, rec: JobRecord) -> str:
        self.attempt = rec.attempts
        again = f", again: {self.resumes}; that does not count" if self.resumes else ""
        try:
            self.events.add("state", f"running (attempt {rec.attempts}{again})")
            report = self._resume() or self._prune(rec.spec)
            check = self._reporter().check_cancel
            artifacts = publish(self.objects, self.job_id, self.out, self.events, check)
        except Cancelled:
            self._cleanup()
            end = partial(job_state.cancel, now=now(), owner=self.owner)
            return self._finish(JobState.cancelled, "cancelled; partial files removed", end)
        except (Interrupted, *UNREACHABLE) as exc:  # not the job's failure: keep its checkpoints
            return self._interrupted(exc)
        except EngineError as exc:
            self.events.traceback()
            self._cleanup()
            return self._fail(type(exc).__name__, str(exc))
        except Exception as exc:  # anything else still ends the job with a readable error
            self.events.traceback()
            self._cleanup()
            return self._fail(type(exc).__name__, str(exc) or repr(exc))
        summary = report.summary()
        end = partial(
            job_state.succeed, owner=self.owner, now=now(), summary=summary, artifacts=artifacts
        )
        state = self._finish(JobState.succeeded, "succeeded", end)
        if self.objects.remote and state == JobState.succeeded.value:
            shutil.rmtree(self.out, ignore_errors=True)  # scratch: the store holds it now
        return state

    def _resume(self) -> PruneReport | None:
        """A previous attempt finished writing but died before recording success."""
        path = self.out / REPORT_NAME
        if path.is_file():
            self.events.add("info", "checkpoint already complete; recording it")
            return PruneReport.model_validate_json(path.read_text())
        return None

    def _prune(self, spec: PruneSpec) -> PruneReport:
        from worker.engine.run import run

        self._cleanup(keep_resume=True)  # a restarted job resumes from its checkpoints
        self.out.parent.mkdir(parents=True, exist_ok=True)
        fetch_uploads(self.objects, spec, self.settings.UPLOADS_DIR)
        return run(
            spec,
            self.out,
            reporter=self._reporter(),
            data_dir=self.settings.DATA_DIR,
            upload_dir=self.settings.UPLOADS_DIR,
            models_dir=self.settings.MODELS_DIR,
            allow_local=False,  # a hub id is never read as a path relative to the worker
            tasks_dir=self.settings.TASKS_DIR,
        )

    def _reporter(self) -> JobReporter:
        limit = self.settings.JOB_TIME_LIMIT_S
        return JobReporter(self.store, self.job_id, self.owner, limit, events=self.events)

    def _cleanup(self, keep_resume: bool = False) -> None:
        """Remove what an attempt left; with `keep_resume`, keep what a restart resumes from
        (checkpoints, and the lazy walk's layers already written to the partial output)."""
        if not keep_resume:
            shutil.rmtree(resume_dir(self.out), ignore_errors=True)
            shutil.rmtree(self.partial, ignore_errors=True)
        shutil.rmtree(self.out, ignore_errors=True)
        if self.objects.remote and not keep_resume:
            try:
                self.objects.delete_prefix(f"jobs/{self.job_id}/")
            except StoreError as exc:  # the retention sweep or a delete retries it
                log.warning("job %s: objects not removed: %s", self.job_id, exc)

    def _fail(self, kind: str, message: str) -> str:
        error = JobError(type=kind, message=message)
        end = partial(job_state.fail, owner=self.owner, now=now(), error=error)
        return self._finish(JobState.failed, f"failed: {kind}: {message}", end)

    def _finish(self, state: JobState, message: str, end: Callable[[JobRecord], JobRecord]) -> str:
        """Record the outcome, unless the job is no longer ours (taken over, or ended)."""
        try:
            update = lambda: self.store.update(self.job_id, end)  # noqa: E731
            rec = self.events.redis(update, f"recording the outcome {state.value}")
        except IllegalTransition as exc:
            log.warning("job %s: outcome %s not recorded: %s", self.job_id, state.value, exc)
            rec = self.events.redis(lambda: self.store.get(self.job_id), "reading the job")
            return rec.state.value if rec else "missing"
        except Interrupted as exc:  # the next delivery finds what this one left and records it
            return self._interrupted(exc)
        with contextlib.suppress(Interrupted):  # recorded; its event and metric are extras
            self.events.add("error" if state == JobState.failed else "state", message)
            if rec and rec.started_at and rec.finished_at:
                seconds = (rec.finished_at - rec.started_at).total_seconds()
                self.events.redis(
                    lambda: self.store.record_duration(state.value, seconds),
                    "recording the duration",
                )
        return rec.state.value if rec else "missing"

    def _interrupted(self, exc: Exception) -> str:
        """Redis stayed unreachable: leave everything a restart resumes from (or records) and a
        note that this attempt did not die, and return once Redis is back; the recovery sweep
        then re-queues the job (this attempt's heartbeat has stopped)."""
        reason = str(exc) if isinstance(exc, Interrupted) else f"Redis: {type(exc).__name__}"
        self.events.traceback()
        log.warning(
            "job %s [%s] interrupted: %s; its checkpoints are kept and the next delivery "
            "resumes from them",
            self.job_id,
            self.events.stage,
            reason,
        )
        interruption.leave_note(self.out, self.owner, self.attempt, reason)
        wait_until_reachable(self.store.r, f"job {self.job_id}")
        return "interrupted"
