--[[
  Record the outcomes of finished jobs (and ack them), then apply retention.

  KEYS[1] stream, KEYS[2] delayed set, KEYS[3] completed set, KEYS[4] failed set
  ARGV[1] job hash prefix
  ARGV[2] consumer group
  ARGV[3] now (ms)
  ARGV[4], ARGV[5] keep completed: count (-1: no bound), age ms (0: no bound)
  ARGV[6], ARGV[7] keep failed: count, age ms
  ARGV[8..] outcome records of 6 values each (runtime.engine.outcomes encodes them):
    kind, stream id ('' when the job did not come from the stream), job id, a, b, c
      done:  a = result JSON or ''
      retry: a = error JSON, b = due ms, c = message
      fail:  a = error JSON, b = message
      defer: a = due ms, b = message (held back by a keyed rate limit; not a failure)

  Returns 1.
]]
--- @include "include/append_error.lua"
--- @include "include/trim.lua"
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
