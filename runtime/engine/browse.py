"""Pages of a channel's jobs for people (the dashboard).

Paging is by cursor, never by reading a whole state: a page of failed, completed or
delayed jobs starts at the rank of the cursor's job in its sorted set (ZREVRANK, O(log N)),
a page of waiting jobs at the rank of the cursor's job in the waiting set (ZRANK, start
order), a page of active jobs after the cursor's stream id (XPENDING from there). A
filter by error type runs in Redis (`lua/filter_finished.lua`) over at most
`FILTER_BUDGET` jobs per page; a time range bounds the scores (or stream ids, which carry
their time). So a page costs about the same with a thousand jobs or a million.

Cursors are opaque text to callers: `<score>:<job id>` in sorted sets, a stream id in the
stream. A malformed one is an `InvalidJobRequest` naming `cursor`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from runtime.engine.clock import text
from runtime.engine.connection import RedisClient
from runtime.engine.jobs import JobInfo, JobState
from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys
from runtime.engine.script_loader import load_script
from runtime.errors import InvalidJobRequest

__all__ = [
    "FILTER_BUDGET",
    "MAX_ERROR_FILTER",
    "BrowseScripts",
    "JobFilter",
    "JobPage",
    "jobs_page",
]

FILTER_BUDGET = 2_000  # jobs one filtered page looks at, at most
MAX_ERROR_FILTER = 200  # characters of an error type filter
# Fields a list row shows: not `data` (the payload) nor `errors` (every traceback).
_ROW_FIELDS = (
    b"state",
    b"attempts",
    b"failures",
    b"enqueued_at",
    b"started_at",
    b"finished_at",
    b"due_at",
    b"error",
)
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_SORTED: dict[str, str] = {
    "failed": "failed",
    "completed": "completed",
    "delayed": "delayed",
    "cancelled": "cancelled",
}


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What a page is narrowed to: jobs whose time (finished, due, or stream entry time)
    is within [since_ms, until_ms], and whose last error's type contains `error_type`."""

    error_type: str = ""
    since_ms: int | None = None
    until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page: its jobs (list rows: no payload, the last error only), the cursor of the
    next page (None: this is the last), and how many jobs a filter looked at."""

    jobs: list[JobInfo]
    next_cursor: str | None
    examined: int = 0


class BrowseScripts:
    """The script of the filtered page, registered once."""

    def __init__(self, redis: RedisClient) -> None:
        self.filter_finished = redis.register_script(load_script("filter_finished"))


async def _call(script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    return await script(keys=keys, args=args)


def _zset_cursor(cursor: str) -> tuple[int, str]:
    score, sep, job_id = cursor.partition(":")
    if not sep or not score.isdigit() or not job_id or len(score) > 20:
        raise InvalidJobRequest("cursor: not a cursor of this list (start from the first page)")
    return int(score), job_id


def _stream_cursor(cursor: str) -> str:
    if not _STREAM_ID.match(cursor):
        raise InvalidJobRequest("cursor: not a cursor of this list (start from the first page)")
    return cursor


async def _rows(
    redis: RedisClient, keys: ChannelKeys, channel: str, ids: list[str]
) -> list[JobInfo]:
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(keys.job(job_id), _ROW_FIELDS)
        replies: list[list[bytes | None]] = await pipe.execute()
    rows = []
    for job_id, values in zip(ids, replies, strict=True):
        raw = {name: value for name, value in zip(_ROW_FIELDS, values, strict=True) if value}
        if raw:
            rows.append(JobInfo.from_hash(channel, job_id, raw))
    return rows


async def jobs_page(
    redis: RedisClient,
    scripts: BrowseScripts,
    keys: ChannelKeys,
    state: JobState,
    *,
    cursor: str | None = None,
    limit: int = 50,
    where: JobFilter | None = None,
) -> JobPage:
    """A page of the channel's jobs in `state`: sorted sets newest first, the stream
    oldest first. Raises InvalidJobRequest for a malformed cursor or a filter the state
    cannot apply."""
    where = where or JobFilter()
    if state in _SORTED:
        return await _sorted_page(redis, scripts, keys, state, cursor, limit, where)
    if state == "waiting" and (where.since_ms is not None or where.until_ms is not None):
        raise InvalidJobRequest(
            "since: waiting jobs are listed in start order (priority, then first in), "
            "without a time range"
        )
    if where.error_type:
        raise InvalidJobRequest(
            "error: waiting and active jobs are listed without an error filter "
            "(their last error shows once they fail or wait to retry)"
        )
    if state == "waiting":
        return await _waiting_page(redis, keys, cursor, limit)
    return await _stream_page(redis, keys, state, cursor, limit, where)


async def _waiting_page(
    redis: RedisClient, keys: ChannelKeys, cursor: str | None, limit: int
) -> JobPage:
    """The waiting set in start order (its score: priority, then a sequence), from the
    rank of the cursor's job (ZRANK, O(log N))."""
    start = 0
    if cursor is not None:
        score, job_id = _zset_cursor(cursor)
        rank: Any = await redis.zrank(keys.waiting, job_id)
        if isinstance(rank, int):
            start = rank + 1
        else:  # the cursor's job started meanwhile: go on after its score
            start = int(await redis.zcount(keys.waiting, "-inf", score))
    raw: list[tuple[bytes, float]] = await redis.zrange(  # type: ignore[assignment]
        keys.waiting, start, start + limit, withscores=True
    )
    entries = [(text(member), int(score)) for member, score in raw]
    more = len(entries) > limit
    entries = entries[:limit]
    rows = await _rows(redis, keys, keys.channel, [job_id for job_id, _ in entries])
    next_cursor = f"{entries[-1][1]}:{entries[-1][0]}" if more and entries else None
    return JobPage(rows, next_cursor)


async def _start_rank(
    redis: RedisClient, index: str, cursor: str | None, until_ms: int | None
) -> tuple[int, int | None]:
    """(rank to start at, highest score to take) of a page going newest to oldest."""
    if cursor is None:
        if until_ms is None:
            return 0, None
        return int(await redis.zcount(index, f"({until_ms}", "+inf")), until_ms
    score, job_id = _zset_cursor(cursor)
    rank: Any = await redis.zrevrank(index, job_id)
    if isinstance(rank, int):
        return rank + 1, None
    # The cursor's job left the set meanwhile (retried, removed): start below its score.
    return int(await redis.zcount(index, score, "+inf")), score


async def _sorted_page(
    redis: RedisClient,
    scripts: BrowseScripts,
    keys: ChannelKeys,
    state: str,
    cursor: str | None,
    limit: int,
    where: JobFilter,
) -> JobPage:
    index = getattr(keys, _SORTED[state])
    start, _ = await _start_rank(redis, index, cursor, where.until_ms)
    low = where.since_ms if where.since_ms is not None else -1
    channel = keys.channel
    if where.error_type:
        found, last_id, last_score, ended = await _call(
            scripts.filter_finished,
            [index],
            [keys.job_prefix, start, low, where.error_type, limit, FILTER_BUDGET],
        )
        ids = [text(found[i]) for i in range(0, len(found), 2)]
        examined_cursor = f"{int(float(last_score))}:{text(last_id)}" if text(last_id) else None
        rows = await _rows(redis, keys, channel, ids)
        return JobPage(rows, None if int(ended) else examined_cursor, examined=len(ids))
    raw: list[tuple[bytes, float]] = await redis.zrevrange(  # type: ignore[assignment]
        index, start, start + limit, withscores=True
    )
    entries = [(text(member), int(score)) for member, score in raw if score >= low]
    more = len(entries) > limit
    entries = entries[:limit]
    rows = await _rows(redis, keys, channel, [job_id for job_id, _ in entries])
    next_cursor = f"{entries[-1][1]}:{entries[-1][0]}" if more and entries else None
    return JobPage(rows, next_cursor)


async def _stream_page(
    redis: RedisClient,
    keys: ChannelKeys,
    state: str,
    cursor: str | None,
    limit: int,
    where: JobFilter,
) -> JobPage:
    """Active jobs: the consumer group's pending entries, in stream order (whose ids carry
    the time a worker took the job)."""
    after = _stream_cursor(cursor) if cursor is not None else None
    try:
        groups: list[dict[str, Any]] = await redis.xinfo_groups(keys.stream)
    except ResponseError:  # no stream yet
        return JobPage([], None)
    group = next((g for g in groups if text(g["name"]) == CONSUMER_GROUP), None)
    low = f"{where.since_ms}-0" if where.since_ms is not None else "-"
    high = f"{where.until_ms}-18446744073709551615" if where.until_ms is not None else "+"
    if group is None:
        return JobPage([], None)
    first = f"({after}" if after else low
    pending: Any = await redis.xpending_range(
        keys.stream, CONSUMER_GROUP, min=first, max=high, count=limit + 1
    )
    async with redis.pipeline(transaction=False) as pipe:
        for item in pending:
            pipe.xrange(keys.stream, min=item["message_id"], max=item["message_id"])
        ranges: list[Any] = await pipe.execute()
    entries = [entry for found in ranges for entry in found]
    more = len(entries) > limit
    entries = entries[:limit]
    ids = [job_id for _, fields in entries if (job_id := _task_id(fields.get(b"data", b"")))]
    rows = [row for row in await _rows(redis, keys, keys.channel, ids) if row.state == state]
    next_cursor = text(entries[-1][0]) if more and entries else None
    return JobPage(rows, next_cursor)


def _task_id(data: bytes) -> str | None:
    try:
        job_id = json.loads(data).get("task_id")
    except (ValueError, AttributeError):
        return None
    return job_id if isinstance(job_id, str) else None
