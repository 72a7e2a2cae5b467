--[[
  Start a batch of jobs read from the stream: grant starts under the channel's global
  rate limit (all of them without one), mark the granted jobs active and count their
  attempts. The rate limit costs no round trip of its own.

  Fenced like finish.lua: a job starts only while its stream entry is pending for this
  consumer with the delivery count it was claimed under. A process resumed after a
  pause may hold entries another process has taken over (and maybe finished) since:
  those are dropped here, not started again.

  A job cancelled after it was taken (cancel.lua flags it) is not started: it is acked
  and recorded as cancelled here.

  Nothing starts while the channel is paused: the jobs stay claimed (held by the caller)
  and are tried again after the wait returned.

  KEYS[1] stream
  KEYS[2] cancelled set
  KEYS[3] paused flag
  KEYS[4] limiter window  } only when the channel has a global rate limit
  KEYS[5] limiter total   }
  KEYS[last - 1] event stream, KEYS[last] channel meta (include/events.lua)
  ARGV[1] job hash prefix
  ARGV[2] now (ms)
  ARGV[3] window ms, ARGV[4] max starts in a window, ARGV[5] grant token (unused
          without a limiter)
  ARGV[6] consumer group
  ARGV[7] this consumer
  ARGV[8..] per job, in the order they should start, 3 values: job id, stream id,
          delivery count of the claim

  Returns {granted, wait ms until the next grant, {attempt, failures} per granted job
  in order, grants now in the window, positions (from 1) of the jobs dropped because
  the claim is no longer this consumer's, positions of the jobs cancelled}. Granted jobs
  are the first `granted` of the jobs neither dropped nor cancelled.
]]
--- @include "include/claim.lua"
--- @include "include/events.lua"
--- @include "include/limit.lua"
local PAUSED_RETRY_MS = 500
local prefix, now, group, consumer = ARGV[1], ARGV[2], ARGV[6], ARGV[7]
local held, dropped, cancelled = {}, {}, {}
local position = 0
for i = 8, #ARGV, 3 do
  position = position + 1
  local id, sid, delivery = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if not holds_claim(KEYS[1], group, consumer, sid, delivery) then
    dropped[#dropped + 1] = position
  elseif redis.call('HEXISTS', prefix .. id, 'cancel') == 1 then
    local key = prefix .. id
    local data = redis.call('XRANGE', KEYS[1], sid, sid)[1]
    redis.call('HSET', key, 'state', 'cancelled', 'finished_at', now)
    if data then redis.call('HSET', key, 'data', data[2][2]) end
    redis.call('HDEL', key, 'cancel')
    redis.call('ZADD', KEYS[2], now, id)
    redis.call('XACK', KEYS[1], group, sid)
    redis.call('XDEL', KEYS[1], sid)
    cancelled[#cancelled + 1] = position
    emit('cancelled', id, nil)
  else
    held[#held + 1] = id
  end
end
local wanted = #held
local granted, wait, used = wanted, 0, 0
if wanted > 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  granted, wait = 0, PAUSED_RETRY_MS
elseif #KEYS > 5 and wanted > 0 then  -- a limiter's two keys besides the events'
  local window, max = tonumber(ARGV[3]), tonumber(ARGV[4])
  granted, wait, used = limit(KEYS[4], KEYS[5], window, max, wanted, ARGV[5])
end
local rows = {}
for i = 1, granted do
  local key = prefix .. held[i]
  redis.call('HSET', key, 'state', 'active', 'started_at', now)
  local attempt = redis.call('HINCRBY', key, 'attempts', 1)
  local failures = tonumber(redis.call('HGET', key, 'failures') or '0') or 0
  rows[#rows + 1] = {attempt, failures}
  emit('active', held[i], '{"attempt":' .. attempt .. '}')
end
return {granted, wait, rows, used, dropped, cancelled}
