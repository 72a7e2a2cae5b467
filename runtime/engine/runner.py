"""Runs started jobs: one task per job calls the channel's handler and turns how it
ended into an outcome for the recorder."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from runtime.engine import tracing
from runtime.engine.channel import Channel
from runtime.engine.clock import now_ms
from runtime.engine.context import JobContext
from runtime.engine.jobs import JobError
from runtime.engine.metrics import ChannelMetrics
from runtime.engine.outcomes import Completed, Failed, Outcome, Retrying
from runtime.engine.recorder import OutcomeRecorder
from runtime.engine.retry import backoff_ms
from runtime.engine.scripts import RunNumbers
from runtime.errors import PermanentError

__all__ = ["ClaimedJob", "JobRunner"]


@dataclass(slots=True)
class ClaimedJob:
    """A stream entry decoded into a job, claimed by this process."""

    stream_id: str
    delivery: int  # the entry's delivery count when claimed: the claim its outcome needs
    message: bytes
    job_id: str
    payload: BaseModel
    due_ms: int  # when it became ready to run (the stream id's time)


class JobRunner:
    """The channel's running jobs (by stream id) and the slots they take."""

    def __init__(
        self,
        channel: Channel[Any, Any],
        recorder: OutcomeRecorder,
        metrics: ChannelMetrics,
        resources: object = None,
    ) -> None:
        self.channel = channel
        self._resources = resources  # what the app's resources factory yielded
        self.running: dict[str, asyncio.Task[None]] = {}
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
        context = JobContext(
            job_id=job.job_id,
            channel=channel.name,
            attempt=numbers.attempt,
            logger=self._job_logger,
            resources=self._resources,
        )
        started = time.perf_counter()
        outcome: Outcome
        try:
            if tracing.ENABLED and tracing.recording():
                with tracing.run_span(channel.name, job.job_id, numbers.attempt, job.message):
                    result = await channel.process(job.payload, context)
            else:
                result = await channel.process(job.payload, context)
            outcome = Completed(
                job.stream_id, job.delivery, job.job_id, self._encode_result(result)
            )
        except asyncio.CancelledError:
            if self._abandoned:
                return  # left unacknowledged for another process
            raise
        except Exception as error:
            outcome = self._failure(job, numbers, error)
            self._log_failure(job, numbers.attempt, outcome, error, time.perf_counter() - started)
        finally:
            task = asyncio.current_task()
            if self.running.get(job.stream_id) is task:
                del self.running[job.stream_id]
                self.lost.discard(job.stream_id)
            else:
                self.superseded.discard(task)
            self.slot_freed.set()
        elapsed = time.perf_counter() - started
        self._metrics.run_seconds.observe(elapsed)
        if isinstance(outcome, Completed) and self._job_logger.isEnabledFor(logging.DEBUG):
            self._job_logger.debug(
                "job completed", extra=self._fields(job, numbers.attempt, elapsed, "completed")
            )
        self._recorder.record(outcome)

    def _failure(self, job: ClaimedJob, numbers: RunNumbers, error: Exception) -> Outcome:
        """Retry while attempts are left and the error is not permanent; else fail."""
        channel = self.channel
        record = JobError.from_exception(error, numbers.attempt)
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
