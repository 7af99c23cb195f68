"""A job's events: each stored in the job's event list (through short Redis outages) and
logged as one line with the job id and the stage it happened in."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from service.jobs import JobStore
from worker.redis_retry import retrying

log = logging.getLogger(__name__)
LEVELS = {"error": logging.ERROR, "warning": logging.WARNING}
T = TypeVar("T")


class JobEvents:
    """The events of job `job_id`; `stage` is the stage it is in (set by its reporter)."""

    def __init__(self, store: JobStore, job_id: str, retry_s: float):
        self.store, self.job_id, self.retry_s = store, job_id, retry_s
        self.stage = "starting"

    def add(self, kind: str, message: str, **data: Any) -> None:
        line = "started" if kind == "stage" else message
        log.log(LEVELS.get(kind, logging.INFO), "job %s [%s] %s", self.job_id, self.stage, line)
        add = lambda: self.store.add_event(self.job_id, kind, message, **data)  # noqa: E731
        self.redis(add, f"recording the {kind} event {message!r}")

    def redis(self, call: Callable[[], T], what: str) -> T:
        """`call()` (a write or read of this job's keys), retried through a short outage."""
        return retrying(call, self.retry_s, what, f"job {self.job_id} [{self.stage}]")

    def traceback(self) -> None:
        """The traceback of the exception being handled, at debug level only."""
        log.debug("job %s [%s] traceback", self.job_id, self.stage, exc_info=True)
