"""Prometheus metrics read from Redis at scrape time: jobs by state, queue depth, durations."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CollectorRegistry, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from service.jobs import DURATION_BUCKETS, JobStore
from service.schemas import JobState


class JobsCollector(Collector):
    """Reads the shared job store, so every api replica reports the same numbers."""

    def __init__(self, store: JobStore):
        self.store = store

    def collect(self) -> Iterator:
        jobs = GaugeMetricFamily("pruneserve_jobs", "Jobs by state", labels=["state"])
        for state, count in self.store.count_by_state().items():
            jobs.add_metric([state], count)
        yield jobs
        yield GaugeMetricFamily(
            "pruneserve_queue_depth", "Tasks waiting in the queue", value=self.store.queue_depth()
        )
        yield GaugeMetricFamily(
            "pruneserve_workers_alive",
            "Workers with a fresh heartbeat",
            value=len(self.store.workers_alive()),
        )
        hist = HistogramMetricFamily(
            "pruneserve_job_duration_seconds", "Run time of finished jobs", labels=["state"]
        )
        for state in (s.value for s in JobState if s.terminal):
            raw = self.store.durations(state)
            buckets = [(str(le), raw.get(str(le), 0.0)) for le in DURATION_BUCKETS]
            buckets.append(("+Inf", raw.get("+Inf", 0.0)))
            hist.add_metric([state], buckets, sum_value=raw.get("sum", 0.0))
        yield hist


def make_registry(store: JobStore) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(store))
    return registry
