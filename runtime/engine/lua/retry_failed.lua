--[[
  Run a failed job again: its message goes back on the stream, its failures reset.

  KEYS[1] stream, KEYS[2] failed set
  ARGV[1] job hash prefix
  ARGV[2] job id

  Returns {done, state found}: {1, 'failed'} when retried; {0, state} when the job is in
  another state; {0, ''} when there is no such job.
]]
local key = ARGV[1] .. ARGV[2]
local state = redis.call('HGET', key, 'state')
if not state then return {0, ''} end
if state ~= 'failed' then return {0, state} end
local data = redis.call('HGET', key, 'data')
if not data then return {0, state} end
redis.call('XADD', KEYS[1], '*', 'data', data)
redis.call('HSET', key, 'state', 'waiting', 'failures', 0)
redis.call('HDEL', key, 'data', 'finished_at')
redis.call('ZREM', KEYS[2], ARGV[2])
return {1, state}
