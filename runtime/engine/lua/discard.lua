--[[
  Remove a finished or delayed job; a job waiting in or running from the stream cannot
  be removed.

  KEYS[1] delayed set, KEYS[2] completed set, KEYS[3] failed set
  ARGV[1] job hash prefix
  ARGV[2] job id

  Returns {done, state found}: {1, state} when removed; {0, state} when the job is
  waiting or active; {0, ''} when there is no such job.
]]
local key = ARGV[1] .. ARGV[2]
local state = redis.call('HGET', key, 'state')
if not state then return {0, ''} end
if state ~= 'failed' and state ~= 'completed' and state ~= 'delayed' then return {0, state} end
redis.call('DEL', key)
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return {1, state}
