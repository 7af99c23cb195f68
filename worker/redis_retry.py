"""A worker's Redis writes ride through a short outage: retried with backoff for a bounded
time (PRUNESERVE_REDIS_RETRY_S), then the run is Interrupted (kept for a resume), never failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from worker.engine.errors import Interrupted

log = logging.getLogger(__name__)
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)  # LOADING after a restart included
FIRST_WAIT_S, MAX_WAIT_S = 0.1, 5.0
T = TypeVar("T")


def retrying(call: Callable[[], T], within_s: float, what: str, whose: str = "") -> T:
    """`call()`, tried again after 0.1 s, 0.2 s, ... (at most 5 s apart) while Redis is
    unreachable; Interrupted once `within_s` seconds passed without an answer. `what` says
    what the call does, `whose` (e.g. "job <id>") starts the log line."""
    deadline, wait = time.monotonic() + within_s, FIRST_WAIT_S
    while True:
        try:
            return call()
        except UNREACHABLE as exc:
            left = deadline - time.monotonic()
            if left <= 0:  # the job's events show this; Redis's address stays in the log
                log.warning(
                    "%sRedis still unreachable while %s (%s); giving up",
                    f"{whose}: " if whose else "",
                    what,
                    exc,
                )
                raise Interrupted(
                    f"Redis was unreachable for {within_s:g} s (PRUNESERVE_REDIS_RETRY_S) while "
                    f"{what}"
                ) from exc
            if wait == FIRST_WAIT_S:
                log.warning(
                    "%sRedis unreachable while %s (%s); retrying for up to %g s",
                    f"{whose}: " if whose else "",
                    what,
                    exc,
                    within_s,
                )
            time.sleep(min(wait, left))
            wait = min(2 * wait, MAX_WAIT_S)


def wait_until_reachable(r: redis.Redis, whose: str) -> None:
    """Block until Redis answers again: a Celery task that returns while the broker is
    unreachable cannot be acknowledged, and its worker then takes no further task. (Celery's
    hard time limit bounds the wait.)"""
    wait = FIRST_WAIT_S
    while True:
        try:
            r.ping()
            return
        except UNREACHABLE as exc:
            if wait == FIRST_WAIT_S:
                log.warning("%s: waiting for Redis to answer again (%s)", whose, exc)
            time.sleep(wait)
            wait = min(2 * wait, MAX_WAIT_S)
