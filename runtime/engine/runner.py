"""Runs started jobs: one task per job calls the channel's handler and turns how it
ended into an outcome for the recorder.

    returned            Completed
    raised              Retrying while attempts are left, else Failed
    over its timeout    cancelled, then as raised, with the error type "timeout"
    raised RetryAfter   Deferred: runs again later, not a failure
    cancelled by cancel Cancelled (asyncio.CancelledError reached the handler)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from runtime.engine import tracing
from runtime.engine.channel import Channel
from runtime.engine.clock import now_ms
from runtime.engine.context import JobContext
from runtime.engine.jobs import JobError
from runtime.engine.limiter import limiter_group
from runtime.engine.metrics import ChannelMetrics
from runtime.engine.outcomes import Cancelled, Completed, Deferred, Failed, Outcome, Retrying
from runtime.engine.recorder import OutcomeRecorder
from runtime.engine.retry import backoff_ms
from runtime.engine.scripts import Claim, RunNumbers
from runtime.errors import PermanentError, RetryAfter

__all__ = ["TIMEOUT", "ClaimedJob", "JobRunner", "ProgressWriter"]

TIMEOUT = "timeout"  # the error type of a run cancelled at its timeout

ProgressWriter = Callable[[Claim, str], Awaitable[bool]]
"""Stores a running job's progress (JSON) while its run holds the claim."""


@dataclass(slots=True)
class ClaimedJob:
    """A stream entry decoded into a job, claimed by this process."""

    stream_id: str
    delivery: int  # the entry's delivery count when claimed: the claim its outcome needs
    message: bytes
    job_id: str
    payload: BaseModel
    due_ms: int  # when it became ready to run (the stream id's time)
    timeout_ms: int | None = None  # its run is cancelled after this long


class JobRunner:
    """The channel's running jobs (by stream id) and the slots they take."""

    def __init__(
        self,
        channel: Channel[Any, Any],
        recorder: OutcomeRecorder,
        metrics: ChannelMetrics,
        resources: object = None,
        progress: ProgressWriter | None = None,
    ) -> None:
        self.channel = channel
        self._resources = resources  # what the app's resources factory yielded
        self._progress = progress
        self.running: dict[str, asyncio.Task[None]] = {}
        self._cancelling: set[str] = set()  # stream ids whose cancellation was asked for
        # Running jobs whose claim another process took (this one missed its stalled
        # interval): they run on, no longer heartbeated; finish.lua drops their outcome.
        self.lost: set[str] = set()
        # Older runs of an entry this process took back and started again (its own event
        # loop was blocked past the stalled interval): they too run on, their outcome
        # dropped, and are waited for (or cancelled) at stop like the rest.
        self.superseded: set[asyncio.Task[None]] = set()
        self.slot_freed = asyncio.Event()
        self._recorder = recorder
        self._metrics = metrics
        self._abandoned = False
        self._job_logger = logging.getLogger(f"channelkit.jobs.{channel.name}")

    def running_job_ids(self) -> list[str]:
        return [task.get_name() for task in self.running.values()]

    @property
    def free_slots(self) -> int:
        return self.channel.concurrency - len(self.running)

    def run(self, job: ClaimedJob, numbers: RunNumbers) -> None:
        older = self.running.get(job.stream_id)
        if older is not None:
            self.superseded.add(older)
        self.lost.discard(job.stream_id)  # this run holds the claim
        # Named by the job id, so that what runs can be told (LoopMonitor, debugging).
        self.running[job.stream_id] = asyncio.create_task(self._run(job, numbers), name=job.job_id)

    def cancel(self, job_id: str) -> bool:
        """Cancel the handler of the running job `job_id` (asked for with Client.cancel):
        asyncio.CancelledError reaches it, and the job ends cancelled. False when it does
        not run here."""
        for stream_id, task in self.running.items():
            if task.get_name() == job_id:
                self._cancelling.add(stream_id)
                task.cancel()
                return True
        return False

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Let running jobs finish for up to `timeout` seconds. True when all did;
        otherwise the rest are cancelled and abandoned, unacknowledged: another process
        takes them over once their stalled interval has passed."""
        tasks = [*self.running.values(), *self.superseded]
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        if not pending:
            return True
        self.abandon()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return False

    def abandon(self) -> None:
        """Jobs cancelled from now on record nothing."""
        self._abandoned = True

    async def _run(self, job: ClaimedJob, numbers: RunNumbers) -> None:
        channel = self.channel
        progress = self._progress
        context = JobContext(
            job_id=job.job_id,
            channel=channel.name,
            attempt=numbers.attempt,
            logger=self._job_logger,
            resources=self._resources,
            progress_writer=None if progress is None else lambda value: progress(job, value),
        )
        started = time.perf_counter()
        outcome: Outcome
        deadline = None if job.timeout_ms is None else asyncio.timeout(job.timeout_ms / 1000)
        try:
            if tracing.ENABLED and tracing.recording():
                with tracing.run_span(channel.name, job.job_id, numbers.attempt, job.message):
                    result = await self._call(job, context, deadline)
            else:
                result = await self._call(job, context, deadline)
            outcome = Completed(
                job.stream_id, job.delivery, job.job_id, self._encode_result(result)
            )
        except asyncio.CancelledError:
            if self._abandoned:
                return  # left unacknowledged for another process
            if job.stream_id not in self._cancelling:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            outcome = Cancelled(job.stream_id, job.delivery, job.job_id, job.message)
            self._metrics.cancelled.inc()
            self._job_logger.info(
                "job cancelled", extra=self._fields(job, numbers.attempt, 0, "cancelled")
            )
        except RetryAfter as signal:
            outcome = self._deferral(job, signal)
        except Exception as error:
            timed_out = deadline is not None and deadline.expired()
            if timed_out:
                error = _over_timeout(job, error)
            outcome = self._failure(job, numbers, error, TIMEOUT if timed_out else None)
            self._log_failure(job, numbers.attempt, outcome, error, time.perf_counter() - started)
        finally:
            task = asyncio.current_task()
            if self.running.get(job.stream_id) is task:
                del self.running[job.stream_id]
                self.lost.discard(job.stream_id)
            else:
                self.superseded.discard(task)
            self._cancelling.discard(job.stream_id)
            self.slot_freed.set()
        elapsed = time.perf_counter() - started
        self._metrics.run_seconds.observe(elapsed)
        if isinstance(outcome, Completed) and self._job_logger.isEnabledFor(logging.DEBUG):
            self._job_logger.debug(
                "job completed", extra=self._fields(job, numbers.attempt, elapsed, "completed")
            )
        self._recorder.record(outcome)

    async def _call(
        self, job: ClaimedJob, context: JobContext[Any], deadline: asyncio.Timeout | None
    ) -> Any:
        """The handler's result, within the job's timeout when it has one."""
        if deadline is None:
            return await self.channel.process(job.payload, context)
        async with deadline:
            return await self.channel.process(job.payload, context)

    def _deferral(self, job: ClaimedJob, signal: RetryAfter) -> Deferred:
        """Back to the delayed set for `signal.seconds`, holding back what its scope says."""
        hold = ""
        if signal.scope == "channel" or (signal.scope == "key" and self.channel.limiter is None):
            hold = "channel"
        elif signal.scope == "key":
            group = limiter_group(self.channel, job.payload)
            hold = "channel" if group is None else f"k:{group}"
        self._metrics.deferred.inc()
        self._job_logger.info(
            "job deferred: %s",
            signal,
            extra={"channel": self.channel.name, "job_id": job.job_id, "outcome": "deferred"},
        )
        due = now_ms() + round(signal.seconds * 1000)
        return Deferred(job.stream_id, job.delivery, job.job_id, due, job.message, hold)

    def _failure(
        self, job: ClaimedJob, numbers: RunNumbers, error: Exception, kind: str | None = None
    ) -> Outcome:
        """Retry while attempts are left and the error is not permanent; else fail."""
        channel = self.channel
        record = JobError.from_exception(error, numbers.attempt, kind)
        if kind == TIMEOUT:
            self._metrics.timed_out.inc()
        permanent = isinstance(error, PermanentError | ValidationError)
        if not permanent and numbers.failures + 1 < channel.retry.attempts:
            due = now_ms() + backoff_ms(channel.retry.backoff, numbers.failures + 1)
            return Retrying(job.stream_id, job.delivery, job.job_id, record, due, job.message)
        return Failed(job.stream_id, job.delivery, job.job_id, record, job.message)

    def _encode_result(self, result: Any) -> str:
        model = self.channel.result_model
        if result is None:
            return ""
        if model is not None and not isinstance(result, model):
            result = model.model_validate(result)
        if isinstance(result, BaseModel):
            return result.model_dump_json(by_alias=True, exclude_unset=True)
        return json.dumps(result, default=str)

    def _fields(
        self, job: ClaimedJob, attempt: int, elapsed: float, outcome: str
    ) -> dict[str, Any]:
        return {
            "channel": self.channel.name,
            "job_id": job.job_id,
            "attempt": attempt,
            "duration_ms": round(elapsed * 1000, 3),
            "outcome": outcome,
        }

    def _log_failure(
        self, job: ClaimedJob, attempt: int, outcome: Outcome, error: Exception, elapsed: float
    ) -> None:
        retrying = isinstance(outcome, Retrying)
        fields = self._fields(job, attempt, elapsed, "retried" if retrying else "failed") | {
            "error": f"{type(error).__name__}: {error}"
        }
        if retrying:
            self._job_logger.warning("job failed, will retry", extra=fields)
        else:
            self._job_logger.error("job failed", extra=fields, exc_info=error)


def _over_timeout(job: ClaimedJob, error: Exception) -> TimeoutError:
    """asyncio.timeout raises a bare TimeoutError: say which limit the run went over."""
    over = TimeoutError(f"the run took longer than its timeout of {job.timeout_ms} ms")
    return over.with_traceback(error.__traceback__)
