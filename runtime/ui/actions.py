"""What a person can do from the dashboard: one table for a channel's actions, one for a
job's. A new engine operation (pause, resume, cancel) is one row here: the pages draw a
button per row, the routes find the row by its name, run it, and show its message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from runtime.engine.client import Client
from runtime.engine.jobs import JobInfo
from runtime.ui.stats import ChannelStats

__all__ = ["CHANNEL_ACTIONS", "JOB_ACTIONS", "ChannelAction", "JobAction"]


@dataclass(frozen=True, slots=True)
class ChannelAction:
    name: str  # the URL segment: POST /ui/channels/<channel>/actions/<name>
    label: str
    confirm: str  # asked before it runs ("{channel}" is replaced)
    done: str  # shown after it ran ("{count}" is replaced)
    run: Callable[[Client, str], Awaitable[int]]
    shown: Callable[[ChannelStats], bool]
    danger: bool = False


@dataclass(frozen=True, slots=True)
class JobAction:
    name: str  # POST /ui/channels/<channel>/jobs/<id>/actions/<name>
    label: str
    done: str
    run: Callable[[Client, str, str], Awaitable[None]]
    allowed: tuple[str, ...]  # job states it applies to
    danger: bool = False

    def shown(self, job: JobInfo) -> bool:
        return job.state in self.allowed


async def _retry_all(client: Client, channel: str) -> int:
    return await client.retry_all_failed(channel)


async def _discard_all(client: Client, channel: str) -> int:
    return await client.discard_all_failed(channel)


async def _cancel_waiting(client: Client, channel: str) -> int:
    return await client.cancel_all(channel, "waiting")


async def _pause(client: Client, channel: str) -> int:
    await client.pause(channel)
    return 1


async def _resume(client: Client, channel: str) -> int:
    await client.resume(channel)
    return 1


async def _cancel(client: Client, channel: str, job_id: str) -> None:
    await client.cancel(channel, job_id)


async def _retry(client: Client, channel: str, job_id: str) -> None:
    await client.retry(channel, job_id)


async def _discard(client: Client, channel: str, job_id: str) -> None:
    await client.discard(channel, job_id)


CHANNEL_ACTIONS: tuple[ChannelAction, ...] = (
    ChannelAction(
        name="pause",
        label="Pause",
        confirm="Pause {channel}? No process starts its jobs until it is resumed.",
        done="The channel is paused: running jobs finish, no new job starts.",
        run=_pause,
        shown=lambda stats: stats.paused is False,
    ),
    ChannelAction(
        name="resume",
        label="Resume",
        confirm="",
        done="The channel is running again.",
        run=_resume,
        shown=lambda stats: stats.paused is True,
    ),
    ChannelAction(
        name="retry-failed",
        label="Retry all failed",
        confirm="Run every failed job of {channel} again?",
        done="{count} failed job(s) sent back to run.",
        run=_retry_all,
        shown=lambda stats: stats.counts.failed > 0,
    ),
    ChannelAction(
        name="discard-failed",
        label="Discard all failed",
        confirm="Remove every failed job of {channel}, with its payload and errors?",
        done="{count} failed job(s) removed.",
        run=_discard_all,
        shown=lambda stats: stats.counts.failed > 0,
        danger=True,
    ),
    ChannelAction(
        name="cancel-waiting",
        label="Cancel all waiting",
        confirm="Cancel every waiting job of {channel}?",
        done="{count} waiting job(s) cancelled.",
        run=_cancel_waiting,
        shown=lambda stats: stats.counts.waiting > 0,
        danger=True,
    ),
)

JOB_ACTIONS: tuple[JobAction, ...] = (
    JobAction(
        name="cancel",
        label="Cancel",
        done="Cancelled (a running job stops at its next await).",
        run=_cancel,
        allowed=("waiting", "delayed", "active"),
        danger=True,
    ),
    JobAction(
        name="retry",
        label="Retry",
        done="The job is waiting to run again.",
        run=_retry,
        allowed=("failed",),
    ),
    JobAction(
        name="discard",
        label="Discard",
        done="The job was removed.",
        run=_discard,
        allowed=("failed", "completed", "cancelled", "delayed"),
        danger=True,
    ),
)
