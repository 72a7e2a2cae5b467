"""Prometheus metrics of one process, in a registry of its own (no global state).

Counters and histograms are updated where things happen (the consumer, the HTTP and
gRPC layers); queue depths are read from Redis when Prometheus scrapes (`depths`).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ChannelMetrics", "Metrics"]

# Job run and wait times: from sub-millisecond no-ops to long deliveries.
_REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
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
    cancelled: Counter
    deferred: Counter
    timed_out: Counter


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
        self._cancelled = Counter(
            "channelkit_jobs_cancelled",
            "Jobs cancelled in this process: handlers cancelled, and jobs taken but not "
            "started because their cancellation was asked for.",
            label,
            registry=r,
        )
        self._deferred = Counter(
            "channelkit_jobs_deferred",
            "Runs that raised RetryAfter: back to delayed, not counted as failures.",
            label,
            registry=r,
        )
        self._timed_out = Counter(
            "channelkit_jobs_timed_out",
            "Runs cancelled at their timeout (counted as failed or retried too).",
            label,
            registry=r,
        )
        self._limited = Counter(
            "channelkit_limiter_wait_seconds",
            "Time jobs were held back by the rate limiter.",
            label,
            registry=r,
        )

        # Read from Redis when scraped: the same value on every process (use max, not sum).
        depth_help = "Jobs in this state in Redis (cluster-wide: aggregate with max, not sum)."
        self._depth = Gauge("channelkit_queue_jobs", depth_help, ["channel", "state"], registry=r)
        self._waiting_by_priority = Gauge(
            "channelkit_queue_waiting_jobs",
            "Waiting jobs by priority (1 starts first), read from Redis when scraped.",
            ["channel", "priority"],
            registry=r,
        )
        self._paused = Gauge(
            "channelkit_channel_paused",
            "1 while the channel is paused (cluster-wide), read from Redis when scraped.",
            ["channel"],
            registry=r,
        )
        self._http = Histogram(
            "channelkit_http_request_seconds",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self._grpc = Histogram(
            "channelkit_grpc_request_seconds",
            "gRPC calls by method and status code.",
            ["method", "code"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self._schedules = Gauge(
            "channelkit_schedules",
            "Schedules stored for the channel (cluster-wide: aggregate with max, not sum).",
            label,
            registry=r,
        )
        self._schedule_enqueued = Counter(
            "channelkit_schedule_jobs_enqueued",
            "Jobs enqueued by a schedule's ticks in this process.",
            ["channel", "schedule"],
            registry=r,
        )
        self._schedule_skipped = Counter(
            "channelkit_schedule_ticks_skipped",
            "Times a schedule with catch_up: skip passed over ticks missed while down.",
            ["channel", "schedule"],
            registry=r,
        )

    def enqueued(self, channel: str, count: int) -> None:
        self._enqueued.labels(channel).inc(count)

    def set_depth(self, channel: str, state: str, value: int) -> None:
        self._depth.labels(channel, state).set(value)

    def set_waiting_by_priority(self, channel: str, priority: int, value: int) -> None:
        self._waiting_by_priority.labels(channel, str(priority)).set(value)

    def set_paused(self, channel: str, paused: bool) -> None:
        self._paused.labels(channel).set(1 if paused else 0)

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        self._http.labels(route, method, str(status)).observe(seconds)

    def observe_grpc(self, method: str, code: str, seconds: float) -> None:
        self._grpc.labels(method, code).observe(seconds)

    def set_schedules(self, channel: str, count: int) -> None:
        self._schedules.labels(channel).set(count)

    def schedule_enqueued(self, channel: str, schedule: str) -> None:
        self._schedule_enqueued.labels(channel, schedule).inc()

    def schedule_skipped(self, channel: str, schedule: str) -> None:
        self._schedule_skipped.labels(channel, schedule).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of everything in this registry."""
        return generate_latest(self.registry)

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
            cancelled=self._cancelled.labels(name),
            deferred=self._deferred.labels(name),
            timed_out=self._timed_out.labels(name),
        )
