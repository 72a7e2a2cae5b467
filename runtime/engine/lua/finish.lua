--[[
  Record the outcomes of finished jobs (and ack them), then apply retention.

  Fenced: an outcome counts only while this consumer still holds the job's claim, the
  stream entry pending for it with the delivery count its run started under. A process
  that was paused past its stalled interval has lost the claim (another took the job
  over, and maybe finished it): its outcome is dropped, so a job never ends in two
  states and a stale failure never schedules a retry beside the new owner's run.

  A retry or deferral of a job whose cancellation was asked for meanwhile (cancel.lua)
  ends it as cancelled instead.

  KEYS[1] stream, KEYS[2] delayed set, KEYS[3] completed set, KEYS[4] failed set,
  KEYS[5] cancelled set, KEYS[6] marker, KEYS[7] channel back-off (a limiter group's
  back-off is this key + ':' + the group: same hash tag, so the same slot)
  KEYS[last - 1] event stream, KEYS[last] channel meta (include/events.lua)
  ARGV[1] job hash prefix
  ARGV[2] consumer group
  ARGV[3] now (ms)
  ARGV[4], ARGV[5] keep completed: count (-1: no bound), age ms (0: no bound)
  ARGV[6], ARGV[7] keep failed (and cancelled): count, age ms
  ARGV[8] this consumer
  ARGV[9..] outcome records of 7 values each (runtime.engine.outcomes encodes them):
    kind, stream id, delivery count of the claim, job id, a, b, c
      done:  a = result JSON or ''
      retry: a = error JSON, b = due ms, c = message
      fail:  a = error JSON, b = message
      defer: a = due ms, b = message, c = what waits: '' this job (a keyed rate limit,
             a RetryAfter), 'channel' the whole channel, 'k:<group>' one limiter group
             (a RetryAfter of that scope): not a failure
      cancel: the handler was cancelled on request (cancel.lua)

  Returns the positions (from 1, in ARGV order) of the records dropped because the claim
  was lost.
]]
--- @include "include/append_error.lua"
--- @include "include/claim.lua"
--- @include "include/events.lua"
--- @include "include/trim.lua"
local prefix, group, now, consumer = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[8]
local stale = {}
local position = 0
for i = 9, #ARGV, 7 do
  position = position + 1
  local kind, sid, delivery, id = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local a, b, c = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local key = prefix .. id
  if not holds_claim(KEYS[1], group, consumer, sid, delivery) then
    stale[#stale + 1] = position
    kind = 'stale'
  else
    redis.call('XACK', KEYS[1], group, sid)
    redis.call('XDEL', KEYS[1], sid)
  end
  if kind == 'stale' then
    -- the current owner of the job records its outcome
  elseif kind == 'done' then
    redis.call('HSET', key, 'state', 'completed', 'finished_at', now)
    if a ~= '' then redis.call('HSET', key, 'result', a) end
    redis.call('ZADD', KEYS[3], now, id)
    emit('completed', id, nil)
  elseif kind == 'cancel' or ((kind == 'defer' or kind == 'retry')
                               and redis.call('HEXISTS', key, 'cancel') == 1) then
    if kind == 'retry' then append_error(key, a) end
    redis.call('HSET', key, 'state', 'cancelled', 'finished_at', now,
               'data', kind == 'retry' and c or b)
    redis.call('HDEL', key, 'cancel')
    redis.call('ZADD', KEYS[5], now, id)
    emit('cancelled', id, nil)
  elseif kind == 'defer' then
    redis.call('HSET', key, 'state', 'delayed', 'due_at', a, 'data', b)
    redis.call('ZADD', KEYS[2], tonumber(a), id)
    redis.call('ZADD', KEYS[6], 'LT', tonumber(a), 'd')
    emit('delayed', id, '{"due_at":' .. a .. ',"held_back":true}')
    if c ~= '' then
      local hold = KEYS[7]
      if c ~= 'channel' then hold = hold .. ':' .. string.sub(c, 3) end
      local ms = tonumber(a) - now
      if ms > 0 and redis.call('PTTL', hold) < ms then
        redis.call('SET', hold, a, 'PX', ms)
      end
    end
  elseif kind == 'retry' then
    append_error(key, a)
    redis.call('HINCRBY', key, 'failures', 1)
    redis.call('HSET', key, 'state', 'delayed', 'due_at', b, 'data', c)
    redis.call('ZADD', KEYS[2], tonumber(b), id)
    redis.call('ZADD', KEYS[6], 'LT', tonumber(b), 'd')
    emit('retrying', id, error_data(a, {due_at = tonumber(b)}))
  else
    append_error(key, a)
    redis.call('HINCRBY', key, 'failures', 1)
    redis.call('HSET', key, 'state', 'failed', 'finished_at', now, 'data', b)
    redis.call('ZADD', KEYS[4], now, id)
    emit('failed', id, error_data(a, nil))
  end
end
trim(KEYS[3], prefix, tonumber(ARGV[4]), tonumber(ARGV[5]), now)
trim(KEYS[4], prefix, tonumber(ARGV[6]), tonumber(ARGV[7]), now)
trim(KEYS[5], prefix, tonumber(ARGV[6]), tonumber(ARGV[7]), now)
return stale
