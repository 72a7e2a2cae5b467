--[[
  Run a failed (or cancelled) job again: it waits at its priority, its failures reset.

  KEYS[1] waiting set, KEYS[2] sequence, KEYS[3] marker, KEYS[4] failed set,
  KEYS[5] cancelled set
  KEYS[last - 1] event stream, KEYS[last] channel meta (include/events.lua)
  ARGV[1] job hash prefix
  ARGV[2] job id
  ARGV[3] the channel's default priority (for jobs stored without one)

  Returns {done, state found}: {1, state} when retried; {0, state} when the job is in
  another state; {0, ''} when there is no such job.
]]
--- @include "include/events.lua"
--- @include "include/wait.lua"
local key, id = ARGV[1] .. ARGV[2], ARGV[2]
local state = redis.call('HGET', key, 'state')
if not state then return {0, ''} end
if state ~= 'failed' and state ~= 'cancelled' then return {0, state} end
if redis.call('HEXISTS', key, 'data') == 0 then return {0, state} end
local priority = tonumber(redis.call('HGET', key, 'priority') or ARGV[3])
push_waiting(KEYS[1], KEYS[2], key, id, priority)
redis.call('HSET', key, 'failures', 0)
redis.call('HDEL', key, 'finished_at', 'cancel')
redis.call('ZREM', KEYS[4], id)
redis.call('ZREM', KEYS[5], id)
redis.call('ZADD', KEYS[3], 0, '0')
emit('retried', id, nil)
return {1, state}
