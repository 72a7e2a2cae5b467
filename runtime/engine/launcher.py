"""From stream entries to running jobs: decode, apply the rate limit, mark started.

    entries ── decode (a message that cannot become a job goes to the failed set)
            ├── keyed limiter: jobs over their group's window are deferred
            ├── start.lua: the global window grants starts; granted jobs become active
            └── the runner runs them; the rest are held here until a start is due

Entries come from the reader (new jobs) and from the reclaimer (jobs taken over).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from runtime.engine.channel import Channel
from runtime.engine.clock import now_ms
from runtime.engine.envelope import (
    describe,
    envelope_model,
    is_payload_error,
    job_id_of,
    payload_of,
    timeout_of,
)
from runtime.engine.jobs import JobError
from runtime.engine.limiter import RateLimiter
from runtime.engine.metrics import ChannelMetrics
from runtime.engine.outcomes import Deferred, Failed
from runtime.engine.recorder import OutcomeRecorder
from runtime.engine.runner import ClaimedJob, JobRunner
from runtime.engine.scripts import ChannelScripts, StreamEntry
from runtime.errors import PermanentError

__all__ = ["Launcher"]

logger = logging.getLogger("channelkit.worker")

RETRY_START_MS = 1000  # jobs whose start Redis refused are tried again after this


class Launcher:
    """Starts claimed entries as jobs, within the channel's rate limit."""

    def __init__(
        self,
        channel: Channel[Any, Any],
        scripts: ChannelScripts,
        *,
        consumer: str,
        limiter: RateLimiter,
        runner: JobRunner,
        recorder: OutcomeRecorder,
        metrics: ChannelMetrics,
    ) -> None:
        self.channel = channel
        self._scripts = scripts
        self._consumer = consumer
        self._limiter = limiter
        self._runner = runner
        self._recorder = recorder
        self._metrics = metrics
        self._envelope = envelope_model(channel)
        self.held: list[ClaimedJob] = []  # claimed, waiting for the rate limiter
        self.limited_ms = 0  # how long the held jobs wait before the next try

    def owned(self) -> list[str]:
        """Stream ids this process holds a claim on: running (not lost) and held jobs."""
        lost = self._runner.lost
        return [
            *(sid for sid in self._runner.running if sid not in lost),
            *(job.stream_id for job in self.held),
        ]

    def forget(self, stream_ids: Sequence[str]) -> None:
        """Claims another process took over: held jobs are dropped (the new owner runs
        them), running ones run on but are no longer counted as owned."""
        gone = set(stream_ids)
        self._runner.lost.update(sid for sid in gone if sid in self._runner.running)
        if self.held:
            self.held = [job for job in self.held if job.stream_id not in gone]

    async def launch(self, entries: Sequence[StreamEntry]) -> None:
        """Decode, limit and start entries just claimed from the stream."""
        jobs = self._decode(entries)
        if self._limiter.keyed:
            jobs = await self._defer_over_limit(jobs)
        if jobs:
            await self._start(jobs)

    async def launch_held(self) -> None:
        """Try the held jobs again (their rate-limit wait is over)."""
        held, self.held = self.held, []
        await self._start(held)

    async def release_held(self) -> None:
        """Give held jobs back to the waiting set, for any process to take at once."""
        if self.held:
            await self._scripts.requeue(self._consumer, self.held)
            self.held.clear()

    def _decode(self, entries: Sequence[StreamEntry]) -> list[ClaimedJob]:
        jobs: list[ClaimedJob] = []
        for entry in entries:
            try:
                envelope = self._envelope.model_validate_json(entry.message)
            except ValidationError as error:
                self._poison(entry, error)
                continue
            payload = payload_of(envelope)
            if payload is None:
                self._poison(entry, "message_invalid: the message carries no payload")
                continue
            due_ms = int(entry.stream_id.split("-", 1)[0])
            timeout_ms = timeout_of(envelope) or self.channel.timeout_ms
            jobs.append(
                ClaimedJob(
                    entry.stream_id,
                    entry.deliveries,
                    entry.message,
                    envelope.task_id,
                    payload,
                    due_ms,
                    timeout_ms,
                )
            )
        return jobs

    async def _defer_over_limit(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """Jobs over their group's window go to the delayed set until a slot is due,
        freeing their slot here."""
        answers = await self._limiter.grant_by_key([job.payload for job in jobs])
        now = now_ms()
        allowed: list[ClaimedJob] = []
        for job, (granted, wait_ms) in zip(jobs, answers, strict=True):
            if granted:
                allowed.append(job)
            else:
                self._recorder.record(
                    Deferred(job.stream_id, job.delivery, job.job_id, now + wait_ms, job.message)
                )
        return allowed

    async def _start(self, jobs: list[ClaimedJob]) -> None:
        """Mark jobs active and run them; the global rate limit may hold some back."""
        request = self._limiter.global_request()
        now = now_ms()
        try:
            started = await self._scripts.start(self._consumer, jobs, now, request)
        except (RedisError, OSError):
            # Not started (Redis down, or refusing writes when out of memory): the jobs
            # stay claimed here and heartbeated, and are tried again, never left pending
            # unowned to be reclaimed as stalled although they never ran.
            self.held = jobs + self.held
            self.limited_ms = RETRY_START_MS
            raise
        if started.dropped:
            self._report_lost(jobs, started.dropped)
        if started.dropped or started.cancelled:
            gone = {*started.dropped, *started.cancelled}
            jobs = [job for index, job in enumerate(jobs) if index not in gone]
            self._metrics.cancelled.inc(len(started.cancelled))
        granted = started.granted
        if granted < len(jobs):
            self.held = jobs[granted:] + self.held
            self.limited_ms = started.wait_ms
        wait_seconds = self._metrics.wait_seconds
        for job, numbers in zip(jobs[:granted], started.runs, strict=True):
            wait_seconds.observe(max(0, now - job.due_ms) / 1000)
            self._runner.run(job, numbers)
        self._metrics.started.inc(granted)
        self._metrics.running.set(len(self._runner.running))
        if granted and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s: claimed and started %d job(s)",
                self.channel.name,
                granted,
                extra={
                    "channel": self.channel.name,
                    "job_ids": [job.job_id for job in jobs[:granted]],
                },
            )
        if request is not None:
            await self._limiter.restamp(request, granted, started.used)

    def _report_lost(self, jobs: list[ClaimedJob], dropped: list[int]) -> None:
        """Jobs start.lua did not start because another process holds them now (this one
        was paused past the stalled interval): left to their owner."""
        gone = set(dropped)
        lost = [job.job_id for index, job in enumerate(jobs) if index in gone]
        logger.warning(
            "%s: %d job(s) not started: another process took %s over while this one was "
            "paused (it missed its stalled interval); their owner runs them",
            self.channel.name,
            len(lost),
            ", ".join(lost[:20]) + (" ..." if len(lost) > 20 else ""),
            extra={"channel": self.channel.name, "job_ids": lost},
        )

    def _poison(self, entry: StreamEntry, error: ValidationError | str) -> None:
        """A message that cannot become a job goes to the failed set, with the reason."""
        job_id = job_id_of(entry.message) or f"poison-{entry.stream_id}"
        if isinstance(error, str):
            kind, problems = "message_invalid", error
        else:
            problems = describe(error)
            kind = "payload_invalid" if is_payload_error(error) else "message_invalid"
        logger.error(
            "%s: job %s cannot be decoded, moved to the failed set: %s",
            self.channel.name,
            job_id,
            problems,
            extra={"channel": self.channel.name, "job_id": job_id},
        )
        record = JobError.from_exception(PermanentError(f"{kind}: {problems}"), 0, kind)
        self._recorder.record(
            Failed(entry.stream_id, entry.deliveries, job_id, record, entry.message)
        )
