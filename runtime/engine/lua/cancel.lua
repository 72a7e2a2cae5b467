--[[
  Cancel a job. A waiting or delayed job is removed from its set and recorded as
  cancelled at once. A job a worker has taken (running, or taken and about to start) is
  flagged and the workers are told on Pub/Sub: the one running it cancels its handler
  (finish.lua records it), and start.lua never starts a flagged job, so a missed message
  still stops it before it runs again.

  KEYS[1] waiting set, KEYS[2] delayed set, KEYS[3] cancelled set
  KEYS[last - 1] event stream, KEYS[last] channel meta (include/events.lua)
  ARGV[1] job hash prefix
  ARGV[2] job id
  ARGV[3] now (ms)
  ARGV[4] the Pub/Sub channel of cancellations
  ARGV[5] the job's channel name

  Returns {outcome, state found}: outcome 1 cancelled, 2 cancellation requested (the job
  is running), 0 refused (finished already; '' when there is no such job).
]]
--- @include "include/events.lua"
local key, id, now = ARGV[1] .. ARGV[2], ARGV[2], ARGV[3]
local state = redis.call('HGET', key, 'state')
if not state then return {0, ''} end
if (state == 'waiting' and redis.call('ZREM', KEYS[1], id) == 1)
   or (state == 'delayed' and redis.call('ZREM', KEYS[2], id) == 1) then
  redis.call('HSET', key, 'state', 'cancelled', 'finished_at', now)
  redis.call('HDEL', key, 'due_at')
  redis.call('ZADD', KEYS[3], now, id)
  emit('cancelled', id, nil)
  return {1, state}
end
if state == 'waiting' or state == 'active' then
  redis.call('HSET', key, 'cancel', now)
  redis.call('PUBLISH', ARGV[4], ARGV[5] .. '\n' .. id)
  return {2, state}
end
return {0, state}
