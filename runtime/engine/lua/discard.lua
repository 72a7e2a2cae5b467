--[[
  Remove a finished, cancelled or delayed job; a job waiting or running cannot be
  removed (cancel it first).

  KEYS[1] delayed set, KEYS[2] completed set, KEYS[3] failed set, KEYS[4] cancelled set
  KEYS[last - 1] event stream, KEYS[last] channel meta (include/events.lua)
  ARGV[1] job hash prefix
  ARGV[2] job id

  Returns {done, state found}: {1, state} when removed; {0, state} when the job is
  waiting or active; {0, ''} when there is no such job.
]]
--- @include "include/events.lua"
local key = ARGV[1] .. ARGV[2]
local state = redis.call('HGET', key, 'state')
if not state then return {0, ''} end
if state ~= 'failed' and state ~= 'completed' and state ~= 'delayed'
   and state ~= 'cancelled' then
  return {0, state}
end
redis.call('DEL', key)
for i = 1, 4 do redis.call('ZREM', KEYS[i], ARGV[2]) end
emit('discarded', ARGV[2], nil)
return {1, state}
