"""runtime.grpc.jobs.STATUS_CODES: each runtime error ends a gRPC call with its status."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, NoReturn

import grpc
import pytest

from runtime.engine.client import CancelResult
from runtime.engine.events import EventHub, JobEvent
from runtime.engine.jobs import ChannelCounts, JobInfo
from runtime.engine.processes import ProcessInfo
from runtime.errors import (
    EnqueueError,
    JobNotFound,
    JobStateConflict,
    PermanentError,
    RedisUnavailable,
    UnknownChannelError,
)
from runtime.grpc.jobs import InvalidJobRequest, JobsAdmin, await_or_abort, status_code


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        self.details = details


class FakeContext:
    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise Aborted(code, details)


class FakeStore:
    """Retry and discard raise what Client raises; everything else is not called."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def job(self, channel: str, job_id: str) -> JobInfo | None:
        return None

    async def jobs(
        self, channel: str, state: str, *, offset: int = 0, limit: int = 50
    ) -> list[JobInfo]:
        raise self.error

    async def counts(self, channel: str) -> ChannelCounts:
        raise self.error

    async def retry(self, channel: str, job_id: str) -> None:
        raise self.error

    async def discard(self, channel: str, job_id: str) -> None:
        raise self.error

    async def cancel(self, channel: str, job_id: str) -> CancelResult:
        raise self.error

    async def cancel_all(self, channel: str, state: str = "waiting") -> int:
        raise self.error

    async def retry_all_failed(self, channel: str) -> int:
        raise self.error

    async def discard_all_failed(self, channel: str) -> int:
        raise self.error

    async def pause(self, channel: str) -> None:
        raise self.error

    async def resume(self, channel: str) -> None:
        raise self.error

    async def processes(self) -> list[ProcessInfo]:
        raise self.error

    @property
    def event_hub(self) -> EventHub:
        raise self.error

    def events(
        self, channel: str, *, job_id: str | None = None, after: str | None = None
    ) -> AsyncGenerator[JobEvent, None]:
        raise self.error


CONFLICT = JobStateConflict("x", "sms", action="retried", state="waiting", allowed=("failed",))


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UnknownChannelError("fax", ["sms"]), grpc.StatusCode.NOT_FOUND),
        (JobNotFound("sms", "x"), grpc.StatusCode.NOT_FOUND),
        (CONFLICT, grpc.StatusCode.FAILED_PRECONDITION),
        (InvalidJobRequest("job_id is required"), grpc.StatusCode.INVALID_ARGUMENT),
        (RedisUnavailable("Redis did not answer"), grpc.StatusCode.UNAVAILABLE),
        (EnqueueError("Redis did not answer"), grpc.StatusCode.UNAVAILABLE),
        (PermanentError("not a transport error"), None),
    ],
)
def test_status_codes(error: Any, code: grpc.StatusCode | None) -> None:
    assert status_code(error) == code


async def test_an_error_ends_the_call_with_its_message() -> None:
    async def failing() -> str:
        raise CONFLICT

    with pytest.raises(Aborted) as caught:
        await await_or_abort(FakeContext(), failing())  # type: ignore[arg-type]
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details == str(CONFLICT)


async def test_an_unmapped_error_is_raised() -> None:
    async def failing() -> str:
        raise PermanentError("boom")

    with pytest.raises(PermanentError):
        await await_or_abort(FakeContext(), failing())  # type: ignore[arg-type]


async def test_admin_passes_the_store_errors_on() -> None:
    admin = JobsAdmin(FakeStore(CONFLICT), ["sms"])
    with pytest.raises(JobStateConflict):
        await admin.retry("sms", "x")
    with pytest.raises(UnknownChannelError):
        await admin.discard("fax", "x")
    with pytest.raises(InvalidJobRequest):
        await admin.discard("sms", "")
    with pytest.raises(JobNotFound):
        await admin.job("sms", "x")
    missing = JobsAdmin(FakeStore(JobNotFound("sms", "x")), ["sms"])
    with pytest.raises(JobNotFound):
        await missing.discard("sms", "x")
