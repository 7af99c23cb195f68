"""One delivery of a prune task: claim the job, run the engine, record the outcome.

Idempotent: a finished job is left alone, a job another live process runs is skipped, and a
job whose worker died is taken over until PRUNESERVE_MAX_ATTEMPTS starts have been used.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import uuid
from datetime import datetime
from pathlib import Path

from service.artifacts import list_artifacts
from service.jobs import JobStore, Record, now_iso
from service.schemas import REPORT_FILE as REPORT_NAME
from service.schemas import JobState, PruneReport, PruneSpec, partial_dir, resume_dir
from service.settings import Settings
from worker.heartbeat import Ticker
from worker.job_reporter import JobReporter

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
        self.out = Path(settings.jobs_dir) / job_id
        self.partial = partial_dir(self.out)

    def run(self) -> str:
        """Returns the job's state after this delivery."""
        rec = self.store.get(self.job_id)
        if rec is None:
            log.warning("job %s does not exist; dropping the task", self.job_id)
            return "missing"
        if JobState(rec["state"]).terminal:
            return rec["state"]
        if rec["state"] == JobState.running.value and self._running_elsewhere():
            return "duplicate"
        beat = Ticker(
            lambda: self.store.beat_job(self.job_id, self.owner), self.settings.HEARTBEAT_S
        )
        self.store.beat_job(self.job_id, self.owner)
        beat.start()
        try:
            rec = self.store.update(self.job_id, self._claim)
            if rec is None or rec["state"] != JobState.running.value or rec["owner"] != self.owner:
                if rec is not None and JobState(rec["state"]).terminal:
                    self._cleanup()  # e.g. given up after MAX_ATTEMPTS: no checkpoints left
                return rec["state"] if rec else "missing"
            return self._execute(rec)
        finally:
            beat.stop()
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

    def _claim(self, rec: Record) -> Record | None:
        if JobState(rec["state"]).terminal:
            return None
        if self.store.cancel_requested(self.job_id):
            rec.update(state=JobState.cancelled.value, finished_at=now_iso())
            rec["progress"] = {**rec["progress"], "stage": "cancelled"}
            return rec
        rec["attempts"] = int(rec.get("attempts") or 0) + 1
        limit = self.settings.MAX_ATTEMPTS
        if rec["attempts"] > limit:
            died = rec["attempts"] - 1
            rec.update(state=JobState.failed.value, finished_at=now_iso())
            rec["error"] = {
                "type": "WorkerLost",
                "message": f"the worker running this job died {died} time(s) (killed or lost); "
                f"giving up after PRUNESERVE_MAX_ATTEMPTS={limit} attempts",
            }
            return rec
        rec.update(state=JobState.running.value, owner=self.owner, started_at=now_iso())
        rec["progress"] = {"stage": "starting", "percent": 0.0}
        return rec

    def _execute(self, rec: Record) -> str:
        from worker.engine.errors import Cancelled, EngineError

        self.store.add_event(self.job_id, "state", f"running (attempt {rec['attempts']})")
        spec = PruneSpec.model_validate(rec["spec"])
        try:
            report = self._resume() or self._prune(spec)
        except Cancelled:
            self._cleanup()
            return self._finish(JobState.cancelled, "cancelled; partial files removed")
        except EngineError as exc:
            self._cleanup()
            return self._fail(type(exc).__name__, str(exc))
        except Exception as exc:  # anything else still ends the job with a readable error
            log.exception("job %s crashed", self.job_id)
            self._cleanup()
            return self._fail(type(exc).__name__, str(exc) or repr(exc))
        artifacts = [a.model_dump() for a in list_artifacts(self.out)]
        summary = report.summary().model_dump(mode="json")
        return self._finish(JobState.succeeded, "succeeded", artifacts=artifacts, summary=summary)

    def _resume(self) -> PruneReport | None:
        """A previous attempt finished writing but died before recording success."""
        path = self.out / REPORT_NAME
        if path.is_file():
            self.store.add_event(self.job_id, "info", "checkpoint already complete; recording it")
            return PruneReport.model_validate_json(path.read_text())
        return None

    def _prune(self, spec: PruneSpec) -> PruneReport:
        from worker.engine.run import run

        self._cleanup(keep_resume=True)  # a restarted job resumes from its checkpoints
        self.out.parent.mkdir(parents=True, exist_ok=True)
        reporter = JobReporter(self.store, self.job_id, self.owner, self.settings.JOB_TIME_LIMIT_S)
        return run(
            spec,
            self.out,
            reporter=reporter,
            data_dir=self.settings.DATA_DIR,
            upload_dir=self.settings.UPLOADS_DIR,
            models_dir=self.settings.MODELS_DIR,
            allow_local=False,  # a hub id is never read as a path relative to the worker
        )

    def _cleanup(self, keep_resume: bool = False) -> None:
        if not keep_resume:
            shutil.rmtree(resume_dir(self.out), ignore_errors=True)
        shutil.rmtree(self.partial, ignore_errors=True)
        shutil.rmtree(self.out, ignore_errors=True)

    def _fail(self, kind: str, message: str) -> str:
        return self._finish(JobState.failed, f"failed: {kind}: {message}", error={
            "type": kind, "message": message})  # fmt: skip

    def _finish(self, state: JobState, message: str, **fields) -> str:
        def apply(rec: Record) -> Record | None:
            if rec["state"] != JobState.running.value or rec.get("owner") != self.owner:
                return None
            rec.update(state=state.value, finished_at=now_iso(), **fields)
            percent = 100.0 if state == JobState.succeeded else rec["progress"].get("percent", 0)
            rec["progress"] = {**rec["progress"], "stage": state.value, "percent": percent}
            rec["progress"]["eta_s"] = None
            return rec

        rec = self.store.update(self.job_id, apply)
        kind = "error" if state == JobState.failed else "state"
        self.store.add_event(self.job_id, kind, message)
        if rec and rec.get("started_at"):
            started = datetime.fromisoformat(rec["started_at"])
            seconds = (datetime.fromisoformat(rec["finished_at"]) - started).total_seconds()
            self.store.record_duration(state.value, seconds)
        return rec["state"] if rec else "missing"
