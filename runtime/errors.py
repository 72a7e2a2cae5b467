"""Errors raised by Channelkit, the runtime and the generator alike.

ChannelkitError
├── ConfigError (also ValueError)        a setting, flag or channels.yaml is wrong
│                                        (the generator's subclass lists every problem)
├── UnknownChannelError (also KeyError)  a channel name that the registry does not have
├── PermanentError                       raised by a handler: fail the job now, never retry
├── RetryAfter                           raised by a handler: run the job again later, not
│                                        a failure; may hold back its channel or key group
├── ResourcesError                       the app's resources factory raised or hung at startup
├── RedisUnavailable (also ConnectionError)  Redis could not be reached or refused the
│   │                                    command; the message says which and why
│   └── EnqueueError                     a job could not be stored in Redis
├── InvalidJobRequest (also ValueError)  a job lookup asked for something out of bounds
│   └── InvalidScheduleError             a schedule's name, cron, time zone or interval
├── JobOperationError                    retry, discard (or cancel) a job could not do
│   ├── JobNotFound (also LookupError)   no such job: never enqueued, or removed by retention
│   └── JobStateConflict                 the job exists but its state does not allow it
└── ScheduleOperationError               a schedule operation that could not be done
    ├── ScheduleNotFound (also LookupError)  no schedule of that name in the channel
    └── ScheduleConflict                 changing through an API what channels.yaml declares

Transports map these in one table each: HTTP 404/409/503, gRPC NOT_FOUND /
FAILED_PRECONDITION / UNAVAILABLE, the CLI's exit codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

__all__ = [
    "ChannelkitError",
    "ConfigError",
    "EnqueueError",
    "InvalidJobRequest",
    "InvalidScheduleError",
    "JobNotFound",
    "JobOperationError",
    "JobStateConflict",
    "PermanentError",
    "RedisUnavailable",
    "ResourcesError",
    "RetryAfter",
    "ScheduleConflict",
    "ScheduleNotFound",
    "ScheduleOperationError",
    "UnknownChannelError",
]


class ChannelkitError(Exception):
    """The root of every error Channelkit raises on purpose."""


class ConfigError(ChannelkitError, ValueError):
    """A runtime setting, flag, environment variable or channels.yaml cannot work."""


class UnknownChannelError(ChannelkitError, KeyError):
    """A channel name that the generated registry does not declare."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = list(known)
        super().__init__(
            f"unknown channel {name!r}; channels declared: {', '.join(known) or 'none'}"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class PermanentError(ChannelkitError):
    """Raise from a handler when retrying cannot help (bad address, rejected by the provider).

    The job goes straight to the failed set, whatever `retry.attempts` says.
    """


class RetryAfter(ChannelkitError):
    """Raise from a handler when a provider says "not now" (HTTP 429 or 503 with
    Retry-After): the job runs again after `seconds`, and the attempt is not counted as a
    failure (retry.attempts is not used up).

    `scope` says what else waits: "job" only this job; "channel" no process starts any
    job of the channel until then; "key" no job of the same rate-limiter group (the
    channel's `limiter.key` value of this job's payload) starts until then — on a
    channel without a keyed limiter, "key" holds back the channel.
    """

    def __init__(self, seconds: float, scope: Literal["job", "channel", "key"] = "job") -> None:
        if not seconds >= 0:
            raise ValueError(f"RetryAfter: seconds must be 0 or more; got {seconds!r}")
        if scope not in ("job", "channel", "key"):
            raise ValueError(f"RetryAfter: scope is 'job', 'channel' or 'key'; got {scope!r}")
        self.seconds = float(seconds)
        self.scope = scope
        super().__init__(f"retry after {self.seconds:g} s (scope {scope})")


class RedisUnavailable(ChannelkitError, ConnectionError):
    """Redis could not be reached, or refused the command (out of memory, read-only
    replica). The original redis-py error is the `__cause__`."""


class EnqueueError(RedisUnavailable):
    """A job could not be stored in Redis; nothing of it was written."""


class InvalidJobRequest(ChannelkitError, ValueError):
    """A request field that no job or channel could match: an empty job id, an unknown
    state, a limit or an offset beyond its bound. The message names the field."""


class JobOperationError(ChannelkitError):
    """An operation on one stored job could not be done."""

    def __init__(self, channel: str, job_id: str, message: str) -> None:
        self.channel = channel
        self.job_id = job_id
        super().__init__(message)


class JobNotFound(JobOperationError, LookupError):
    """No such job: never enqueued, or removed by retention."""

    def __init__(self, channel: str, job_id: str) -> None:
        super().__init__(
            channel,
            job_id,
            f"no job {job_id} in channel {channel!r} (never enqueued, or removed by retention)",
        )


class JobStateConflict(JobOperationError):
    """The job exists, but `action` needs it in one of `allowed` and it is in `state`."""

    def __init__(
        self, channel: str, job_id: str, *, action: str, state: str, allowed: Sequence[str]
    ) -> None:
        self.action = action
        self.state = state
        self.allowed = tuple(allowed)
        super().__init__(
            channel,
            job_id,
            f"job {job_id} in {channel!r} is {state}; only {_either(self.allowed)} jobs "
            f"can be {action}",
        )


def _either(states: Sequence[str]) -> str:
    return states[0] if len(states) == 1 else f"{', '.join(states[:-1])} or {states[-1]}"


class ResourcesError(ChannelkitError):
    """The app's `resources:` factory raised, or did not yield in time, at startup: the
    process stops before taking a job (`runtime serve` exits 1)."""


class InvalidScheduleError(InvalidJobRequest):
    """A schedule that cannot tick: a bad name, cron expression, time zone, interval or
    start/end. The message starts with the field (`cron: bad cron expression ...`)."""


class ScheduleOperationError(ChannelkitError):
    """An operation on one stored schedule could not be done."""

    def __init__(self, channel: str, name: str, message: str) -> None:
        self.channel = channel
        self.name = name
        super().__init__(message)


class ScheduleNotFound(ScheduleOperationError, LookupError):
    def __init__(self, channel: str, name: str) -> None:
        super().__init__(channel, name, f"no schedule {name!r} in channel {channel!r}")

    def __str__(self) -> str:
        return str(self.args[0])


class ScheduleConflict(ScheduleOperationError):
    """The schedule is declared in channels.yaml: only pause and resume apply at runtime."""

    def __init__(self, channel: str, name: str, reason: str) -> None:
        super().__init__(channel, name, f"schedule {name!r} of {channel!r} {reason}")
