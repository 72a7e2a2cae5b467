"""The Lua scripts that change job state, each atomic and each for a whole batch.

Every state change a job goes through (enqueued, started, finished, retried, failed,
reclaimed, moved when due, retried from the failed set) is one script call for many
jobs: the receive path pays Redis round trips per batch, not per job (DESIGN.md). All
keys of a channel share its hash tag, so the scripts stay legal in Redis Cluster.

Job hash fields: state, attempts (runs started), failures, enqueued_at, started_at,
finished_at, due_at (ms since the epoch), result (JSON), error (JSON of the last
error), errors (JSON list of the last 10), data (the message; kept while delayed and
once failed, so the job can run again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys

__all__ = ["ChannelScripts", "Finish", "RateLimit"]

# A sliding log of grants: at most `max` in any window. Redis's clock, so every process
# agrees. Returns granted (0..wanted) and the wait in ms until the next grant is possible.
LIMIT_FUNCTION = """
local function limit(key, total_key, window, max, wanted, token)
  -- One member per grant call (`token:count`, scored by its time) and the running total
  -- in `total_key`: a batch of 100 starts costs one ZADD, not 100.
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local expired = redis.call('ZRANGEBYSCORE', key, '-inf', now - window)
  if #expired > 0 then
    local gone = 0
    for _, member in ipairs(expired) do
      gone = gone + tonumber(string.match(member, ':(%d+)$'))
    end
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    redis.call('DECRBY', total_key, gone)
  end
  local used = math.max(0, tonumber(redis.call('GET', total_key) or '0'))
  local granted = math.max(0, math.min(wanted, max - used))
  if granted > 0 then
    redis.call('ZADD', key, now, token .. ':' .. granted)
    redis.call('INCRBY', total_key, granted)
    redis.call('PEXPIRE', key, window)
    redis.call('PEXPIRE', total_key, window)
  end
  local wait = 0
  if granted < wanted then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    wait = oldest[2] and math.max(1, tonumber(oldest[2]) + window - now) or 1
  end
  return granted, wait, used + granted
end
"""

_APPEND_ERROR = """
local function append_error(key, err)
  local errors = {}
  local raw = redis.call('HGET', key, 'errors')
  if raw then errors = cjson.decode(raw) end
  table.insert(errors, cjson.decode(err))
  while #errors > 10 do table.remove(errors, 1) end
  redis.call('HSET', key, 'error', err, 'errors', cjson.encode(errors))
end
"""

_TRIM = """
local function trim(index, prefix, count, age, now)
  if age > 0 then
    local old = redis.call('ZRANGEBYSCORE', index, '-inf', now - age, 'LIMIT', 0, 1000)
    for _, id in ipairs(old) do redis.call('DEL', prefix .. id) end
    if #old > 0 then redis.call('ZREM', index, unpack(old)) end
  end
  if count >= 0 then
    local excess = redis.call('ZCARD', index) - count
    if excess > 0 then
      local ids = redis.call('ZRANGE', index, 0, excess - 1)
      for _, id in ipairs(ids) do redis.call('DEL', prefix .. id) end
      redis.call('ZREMRANGEBYRANK', index, 0, excess - 1)
    end
  end
end
"""

# KEYS: stream, delayed. ARGV: job prefix, now, then (id, data, delay ms or 0) per job.
# A job id that exists is not enqueued again: returns 0 for it, 1 for each new job.
ENQUEUE = """
local prefix, now = ARGV[1], ARGV[2]
local created = {}
for i = 3, #ARGV, 3 do
  local id, data, delay = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local key = prefix .. id
  if redis.call('EXISTS', key) == 1 then
    created[#created + 1] = 0
  else
    if delay > 0 then
      -- due from the same `now` as enqueued_at, however long the call waited to be sent
      local due = tonumber(now) + delay
      redis.call('HSET', key, 'state', 'delayed', 'enqueued_at', now, 'due_at', due,
                 'attempts', 0, 'failures', 0, 'data', data)
      redis.call('ZADD', KEYS[2], due, id)
    else
      redis.call('HSET', key, 'state', 'waiting', 'enqueued_at', now, 'attempts', 0, 'failures', 0)
      redis.call('XADD', KEYS[1], '*', 'data', data)
    end
    created[#created + 1] = 1
  end
end
return created
"""

# KEYS: the limiter's window and total when the channel has a global rate limit, else none.
# ARGV: job prefix, now, window ms, max starts, grant token, job ids...
# Grants starts first (all of them without a limiter), marks the granted jobs active and
# counts their attempts: the rate limit costs no round trip of its own.
# Returns {granted, wait ms until the next grant, {attempt, failures} per granted job}.
START = (
    LIMIT_FUNCTION
    + """
local prefix, now = ARGV[1], ARGV[2]
local wanted = #ARGV - 5
local granted, wait, used = wanted, 0, 0
if #KEYS > 0 then
  local window, max = tonumber(ARGV[3]), tonumber(ARGV[4])
  granted, wait, used = limit(KEYS[1], KEYS[2], window, max, wanted, ARGV[5])
end
local rows = {}
for i = 6, 5 + granted do
  local key = prefix .. ARGV[i]
  redis.call('HSET', key, 'state', 'active', 'started_at', now)
  local attempt = redis.call('HINCRBY', key, 'attempts', 1)
  local failures = tonumber(redis.call('HGET', key, 'failures') or '0') or 0
  rows[#rows + 1] = {attempt, failures}
end
return {granted, wait, rows, used}
"""
)

# KEYS: stream, delayed, completed, failed.
# ARGV: job prefix, group, now, keep completed count/age, keep failed count/age (-1 / 0
# for no bound), then records of 6: kind, stream id ('' when not from the stream), job
# id, a, b, c where
#   done:  a = result JSON or ''
#   retry: a = error JSON, b = due ms, c = message data
#   fail:  a = error JSON, b = message data
#   defer: a = due ms, b = message data (held back by a keyed rate limit; not a failure)
FINISH = (
    _APPEND_ERROR
    + _TRIM
    + """
local prefix, group, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
for i = 8, #ARGV, 6 do
  local kind, sid, id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local a, b, c = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local key = prefix .. id
  if sid ~= '' then
    redis.call('XACK', KEYS[1], group, sid)
    redis.call('XDEL', KEYS[1], sid)
  end
  if kind == 'done' then
    redis.call('HSET', key, 'state', 'completed', 'finished_at', now)
    if a ~= '' then redis.call('HSET', key, 'result', a) end
    redis.call('ZADD', KEYS[3], now, id)
  elseif kind == 'defer' then
    redis.call('HSET', key, 'state', 'delayed', 'due_at', a, 'data', b)
    redis.call('ZADD', KEYS[2], tonumber(a), id)
  elseif kind == 'retry' then
    append_error(key, a)
    redis.call('HINCRBY', key, 'failures', 1)
    redis.call('HSET', key, 'state', 'delayed', 'due_at', b, 'data', c)
    redis.call('ZADD', KEYS[2], tonumber(b), id)
  else
    append_error(key, a)
    redis.call('HINCRBY', key, 'failures', 1)
    redis.call('HSET', key, 'state', 'failed', 'finished_at', now, 'data', b)
    redis.call('ZADD', KEYS[4], now, id)
  end
end
trim(KEYS[3], prefix, tonumber(ARGV[4]), tonumber(ARGV[5]), now)
trim(KEYS[4], prefix, tonumber(ARGV[6]), tonumber(ARGV[7]), now)
return 1
"""
)

# KEYS: stream, failed. ARGV: job prefix, group, consumer, min idle ms, count,
# max stalled count, now, error JSON for jobs that stalled too often.
# Takes over jobs whose worker stopped heartbeating. XAUTOCLAIM bumps the delivery
# count, so delivered - 1 is how often the job stalled. Returns {stream id, data,
# delivered} for each job this consumer must now run, and how many failed as stalled.
RECLAIM = (
    _APPEND_ERROR
    + """
local prefix, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local max_stalled, now, err = tonumber(ARGV[6]), ARGV[7], ARGV[8]
local claimed = redis.call('XAUTOCLAIM', KEYS[1], group, consumer, ARGV[4], '0-0',
                           'COUNT', ARGV[5])[2]
local out = {}
local failed = 0
for _, entry in ipairs(claimed) do
  if entry and entry[2] then
    local sid, data = entry[1], entry[2][2]
    local delivered = redis.call('XPENDING', KEYS[1], group, sid, sid, 1)[1][4]
    if delivered - 1 > max_stalled then
      local ok, message = pcall(cjson.decode, data)
      local id = (ok and type(message) == 'table' and message['task_id']) or ('poison-' .. sid)
      local key = prefix .. id
      append_error(key, err)
      redis.call('HINCRBY', key, 'failures', 1)
      redis.call('HSET', key, 'state', 'failed', 'finished_at', now, 'data', data)
      redis.call('ZADD', KEYS[2], now, id)
      redis.call('XACK', KEYS[1], group, sid)
      redis.call('XDEL', KEYS[1], sid)
      failed = failed + 1
    else
      out[#out + 1] = {sid, data, delivered}
    end
  end
end
return {out, failed}
"""
)

# KEYS: stream. ARGV: group, consumer, stream ids... Resets the idle time of the jobs
# this consumer still owns (a heartbeat: XCLAIM JUSTID does not bump the delivery
# count). Returns the ids no longer owned: another process took them over.
HEARTBEAT = """
local group, consumer = ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1)[1]
  if pending and pending[2] == consumer then
    redis.call('XCLAIM', KEYS[1], group, consumer, 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

# KEYS: delayed, stream. ARGV: job prefix, now, most to move.
# Moves due jobs to the stream. Returns {moved, next due ms or false}.
MOVE_DUE = """
local prefix = ARGV[1]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do
  local key = prefix .. id
  local data = redis.call('HGET', key, 'data')
  if data then
    redis.call('XADD', KEYS[2], '*', 'data', data)
    redis.call('HSET', key, 'state', 'waiting')
    redis.call('HDEL', key, 'data', 'due_at')
  end
  redis.call('ZREM', KEYS[1], id)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, next[2] or false}
"""

# KEYS: stream. ARGV: group, then (stream id, data) pairs. Puts jobs this consumer read
# but never started back at the end of the stream, so a stopping process leaves them
# to others at once instead of after the stalled interval.
REQUEUE = """
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[1], '*', 'data', ARGV[i + 1])
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return 1
"""

# KEYS: limiter window, its total. ARGV: window ms, max, wanted, grant token.
# Returns {granted, wait ms until the next grant is possible}.
LIMIT = (
    LIMIT_FUNCTION
    + """
local window, max, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local granted, wait = limit(KEYS[1], KEYS[2], window, max, wanted, ARGV[4])
return {granted, wait}
"""
)

# KEYS: limiter window, its total. ARGV: window ms, grant token, grants. Dates the grant
# of one call to now, once their jobs have started, so the window counts from the starts. A
# grant that left the window meanwhile is not brought back (XX).
RESTAMP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now, ARGV[2] .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""

# KEYS: stream, failed. ARGV: job prefix, job id. A failed job runs again.
RETRY_FAILED = """
local key = ARGV[1] .. ARGV[2]
if redis.call('HGET', key, 'state') ~= 'failed' then return 0 end
local data = redis.call('HGET', key, 'data')
if not data then return 0 end
redis.call('XADD', KEYS[1], '*', 'data', data)
redis.call('HSET', key, 'state', 'waiting', 'failures', 0)
redis.call('HDEL', key, 'data', 'finished_at')
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""

# KEYS: delayed, completed, failed. ARGV: job prefix, job id. Removes a finished or
# delayed job; a job waiting in or running from the stream cannot be removed.
DISCARD = """
local key = ARGV[1] .. ARGV[2]
local state = redis.call('HGET', key, 'state')
if state ~= 'failed' and state ~= 'completed' and state ~= 'delayed' then return 0 end
redis.call('DEL', key)
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One grant request: the window of `group` (None: the channel's global window), its
    length, the most starts it allows, and a token naming this grant."""

    group: str | None
    window_ms: int
    max: int
    token: str


class ChannelScripts:
    """The scripts bound to one channel's keys on one Redis connection."""

    def __init__(self, redis: Redis, keys: ChannelKeys) -> None:
        self.keys = keys
        self._enqueue = redis.register_script(ENQUEUE)
        self._start = redis.register_script(START)
        self._finish = redis.register_script(FINISH)
        self._reclaim = redis.register_script(RECLAIM)
        self._heartbeat = redis.register_script(HEARTBEAT)
        self._move_due = redis.register_script(MOVE_DUE)
        self._requeue = redis.register_script(REQUEUE)
        self._limit = redis.register_script(LIMIT)
        self._restamp = redis.register_script(RESTAMP)
        self._retry_failed = redis.register_script(RETRY_FAILED)
        self._discard = redis.register_script(DISCARD)

    async def enqueue(self, jobs: list[tuple[str, bytes, int]], now_ms: int) -> list[bool]:
        """(job id, message, delay ms or 0) each; False where the id existed already."""
        args: list[Any] = [self.keys.job_prefix, now_ms]
        for job_id, data, delay in jobs:
            args += [job_id, data, delay]
        created = await _call(self._enqueue, [self.keys.stream, self.keys.delayed], args)
        return [bool(flag) for flag in created]

    def _limit_keys(self, limit: RateLimit) -> list[str]:
        return [self.keys.limiter(limit.group), self.keys.limiter_total(limit.group)]

    async def start(
        self, job_ids: list[str], now_ms: int, limit: RateLimit | None = None
    ) -> tuple[int, int, list[tuple[int, int]], int]:
        """Start the jobs `limit` allows (all without one), in order: (granted, wait ms
        before more can start, (attempt, failures) per started job, grants now in the
        window)."""
        keys = [] if limit is None else self._limit_keys(limit)
        window, max_starts, token = (
            (0, 0, "") if limit is None else (limit.window_ms, limit.max, limit.token)
        )
        granted, wait, rows, used = await _call(
            self._start, keys, [self.keys.job_prefix, now_ms, window, max_starts, token, *job_ids]
        )
        return (
            int(granted),
            int(wait),
            [(int(attempt), int(failures)) for attempt, failures in rows],
            int(used),
        )

    async def finish(
        self, records: list[Finish], now_ms: int, keep: tuple[int, int, int, int]
    ) -> None:
        args: list[Any] = [self.keys.job_prefix, CONSUMER_GROUP, now_ms, *keep]
        for record in records:
            args += record
        keys = [self.keys.stream, self.keys.delayed, self.keys.completed, self.keys.failed]
        await _call(self._finish, keys, args)

    async def reclaim(
        self, consumer: str, min_idle_ms: int, count: int, max_stalled: int, now_ms: int, error: str
    ) -> tuple[list[tuple[str, bytes, int]], int]:
        rows, failed = await _call(
            self._reclaim,
            [self.keys.stream, self.keys.failed],
            [
                self.keys.job_prefix,
                CONSUMER_GROUP,
                consumer,
                min_idle_ms,
                count,
                max_stalled,
                now_ms,
                error,
            ],
        )
        return [(_text(sid), bytes(data), int(delivered)) for sid, data, delivered in rows], int(
            failed
        )

    async def heartbeat(self, consumer: str, stream_ids: list[str]) -> list[str]:
        lost = await _call(
            self._heartbeat, [self.keys.stream], [CONSUMER_GROUP, consumer, *stream_ids]
        )
        return [_text(sid) for sid in lost]

    async def move_due(self, now_ms: int, most: int) -> tuple[int, float | None]:
        moved, next_due = await _call(
            self._move_due,
            [self.keys.delayed, self.keys.stream],
            [self.keys.job_prefix, now_ms, most],
        )
        return int(moved), (float(next_due) if next_due else None)

    async def requeue(self, entries: list[tuple[str, bytes]]) -> None:
        args: list[Any] = [CONSUMER_GROUP]
        for sid, data in entries:
            args += [sid, data]
        await _call(self._requeue, [self.keys.stream], args)

    async def limit(self, limit: RateLimit, wanted: int) -> tuple[int, int]:
        """(granted, wait ms until the next grant is possible) for `wanted` starts."""
        granted, wait = await _call(
            self._limit, self._limit_keys(limit), [limit.window_ms, limit.max, wanted, limit.token]
        )
        return int(granted), int(wait)

    async def restamp(self, limit: RateLimit, granted: int) -> None:
        """Date the grant made with `limit.token` to now (see RESTAMP)."""
        await _call(self._restamp, self._limit_keys(limit), [limit.window_ms, limit.token, granted])

    async def retry_failed(self, job_id: str) -> bool:
        return bool(
            await _call(
                self._retry_failed,
                [self.keys.stream, self.keys.failed],
                [self.keys.job_prefix, job_id],
            )
        )

    async def discard(self, job_id: str) -> bool:
        keys = [self.keys.delayed, self.keys.completed, self.keys.failed]
        return bool(await _call(self._discard, keys, [self.keys.job_prefix, job_id]))


Finish = list[Any]


async def _call(script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    return await script(keys=keys, args=args)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
