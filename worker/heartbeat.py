"""A daemon thread that calls a function every few seconds (worker and job heartbeats)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

log = logging.getLogger(__name__)


class Ticker(threading.Thread):
    """Calls `beat()` every `interval` seconds until stop(); Redis errors are logged."""

    def __init__(self, beat: Callable[[], None], interval: float, name: str = "heartbeat"):
        super().__init__(name=name, daemon=True)
        self.beat, self.interval = beat, interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
