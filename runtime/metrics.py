"""Prometheus metrics of one process, in a registry of its own (no global state).

Counters and histograms are updated where things happen (the consumer, the HTTP and
gRPC layers); queue depths are read from Redis when Prometheus scrapes (`depths`).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ChannelMetrics", "Metrics"]

# Job run and wait times: from sub-millisecond no-ops to long deliveries.
_TIME_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)


@dataclass(frozen=True, slots=True)
class ChannelMetrics:
    """The metric children of one channel, bound once so the hot path does no lookups."""

    enqueued: Counter
    started: Counter
    completed: Counter
    failed: Counter
    retried: Counter
    stalled: Counter
    run_seconds: Histogram
    wait_seconds: Histogram
    running: Gauge
    limited_seconds: Counter


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        label = ["channel"]
        self._enqueued = Counter(
            "channelkit_jobs_enqueued", "Jobs enqueued by this process.", label, registry=r
        )
        self._started = Counter(
            "channelkit_jobs_started",
            "Job runs started (retries and take-overs included).",
            label,
            registry=r,
        )
        self._completed = Counter(
            "channelkit_jobs_completed", "Jobs whose handler returned.", label, registry=r
        )
        self._failed = Counter(
            "channelkit_jobs_failed", "Jobs moved to the failed set.", label, registry=r
        )
        self._retried = Counter(
            "channelkit_jobs_retried", "Failed runs scheduled to run again.", label, registry=r
        )
        self._stalled = Counter(
            "channelkit_jobs_stalled",
            "Jobs taken over from a worker that stopped heartbeating.",
            label,
            registry=r,
        )
        self._run = Histogram(
            "channelkit_job_run_seconds",
            "Handler run time.",
            label,
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self._wait = Histogram(
            "channelkit_job_wait_seconds",
            "From due (enqueued, or delay elapsed) to start.",
            label,
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self._running = Gauge(
            "channelkit_jobs_running", "Jobs running in this process now.", label, registry=r
        )
        self._limited = Counter(
            "channelkit_limiter_wait_seconds",
            "Time jobs were held back by the rate limiter.",
            label,
            registry=r,
        )

    def channel(self, name: str) -> ChannelMetrics:
        return ChannelMetrics(
            enqueued=self._enqueued.labels(name),
            started=self._started.labels(name),
            completed=self._completed.labels(name),
            failed=self._failed.labels(name),
            retried=self._retried.labels(name),
            stalled=self._stalled.labels(name),
            run_seconds=self._run.labels(name),
            wait_seconds=self._wait.labels(name),
            running=self._running.labels(name),
            limited_seconds=self._limited.labels(name),
        )
