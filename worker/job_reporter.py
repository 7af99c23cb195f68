"""The engine's Reporter for Celery jobs: progress and events into the job record, cancel flag.

Every Redis call rides through a short outage (worker/redis_retry.py); a longer one raises
Interrupted, which stops the run with its checkpoints kept.
"""

from __future__ import annotations

import contextlib
import time

from service import job_state
from service.job_state import IllegalTransition
from service.jobs import JobStore
from worker.engine.errors import Cancelled
from worker.engine.progress import Reporter
from worker.job_events import JobEvents

TRAINING_STAGES = ("train", "recover")


class TimeLimitExceeded(Exception):
    """The job ran longer than PRUNESERVE_JOB_TIME_LIMIT_S."""


class JobReporter(Reporter):
    """Writes stage, layer i/N, percent and ETA; raises Cancelled when the cancel flag is set."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        owner: str,
        time_limit_s: float,
        events: JobEvents | None = None,
    ):
        self.store, self.job_id, self.owner = store, job_id, owner
        self.events = events or JobEvents(store, job_id, store.settings.REDIS_RETRY_S)
        self.deadline = time.monotonic() + time_limit_s
        self.time_limit_s = time_limit_s
        self.current, self.stage_t0 = "starting", time.monotonic()
        self.span = (0.0, 100.0)

    def stage(self, name: str, total: int = 0, span: tuple[float, float] = (0.0, 100.0)) -> None:
        self.current, self.stage_t0, self.span = name, time.monotonic(), span
        self.events.stage = name
        fields = {"stage": name, "message": None, "eta_s": None, "percent": span[0]}
        if name == "prune":
            fields.update(layer=0, n_layers=total)
        self._progress(**fields)
        self.events.add("stage", name, total=total)

    def step(self, done: int, total: int, message: str | None = None, **values: float) -> None:
        lo, hi = self.span
        fraction = done / total if total else 1.0
        fields = {"percent": round(lo + (hi - lo) * fraction, 1), "message": message}
        elapsed = time.monotonic() - self.stage_t0
        eta = round(elapsed / done * (total - done), 1) if done else None
        if self.current == "prune":
            fields.update(layer=done, n_layers=total, eta_s=eta, loss=values.get("loss"))
            self.events.add("layer", message or f"layer {done}/{total}")
        elif self.current in TRAINING_STAGES:
            fields.update(step=done, n_steps=total, eta_s=eta, loss=values.get("loss"))
            if done == total or done % 10 == 0:  # the full curve is in the report
                self.events.add("info", message or f"step {done}/{total}")
        self._progress(**fields)

    def warn(self, message: str) -> None:
        self.events.add("warning", message)

    def check_cancel(self) -> None:
        flag = lambda: self.store.cancel_requested(self.job_id)  # noqa: E731
        if self.events.redis(flag, "reading the cancel flag"):
            raise Cancelled("cancelled on request")
        if time.monotonic() > self.deadline:
            raise TimeLimitExceeded(
                f"the job ran longer than PRUNESERVE_JOB_TIME_LIMIT_S={self.time_limit_s:g} seconds"
            )

    def _progress(self, **fields) -> None:
        # the job may have ended or been taken over: check_cancel and the runner's finish see it
        write = lambda: self.store.update(  # noqa: E731
            self.job_id, lambda r: job_state.progress(r, self.owner, **fields)
        )
        with contextlib.suppress(IllegalTransition):
            self.events.redis(write, "writing progress")
