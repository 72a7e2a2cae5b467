--[[
  Confirm the tick this process took with schedule_advance.lua (or took over): its job is
  stored (or could not be: ARGV[6] says why), and the schedule is next due at its next tick.

  KEYS[1] schedule index, KEYS[2] the schedule's hash
  ARGV[1] name, ARGV[2] tick (ms), ARGV[3] job id, ARGV[4] 1 when the job was created
  (0: it existed already), ARGV[5] now (ms), ARGV[6] error (empty: none)

  Returns 1 confirmed, 0 when the tick is no longer pending (the schedule was removed).
]]
if redis.call('HGET', KEYS[2], 'pending') ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], 'pending', 'pending_until')
if ARGV[6] == '' then
  redis.call('HSET', KEYS[2], 'last_tick', ARGV[2], 'last_job_id', ARGV[3],
             'last_enqueued_at', ARGV[5])
  redis.call('HDEL', KEYS[2], 'error')
  if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[2], 'enqueued', 1) end
else
  redis.call('HSET', KEYS[2], 'error', ARGV[6])
end
local state = redis.call('HMGET', KEYS[2], 'paused', 'next')
local score = '+inf'
if state[1] ~= '1' and state[2] and state[2] ~= '' then score = state[2] end
redis.call('ZADD', KEYS[1], score, ARGV[1])
return 1
