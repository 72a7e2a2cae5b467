--[[
  Pause or resume a schedule. A paused schedule enqueues nothing; resumed, it goes on
  from now: the ticks that fell while it was paused are not owed.

  KEYS[1] schedule index, KEYS[2] the schedule's hash
  ARGV[1] name, ARGV[2] 1 pause, 0 resume, ARGV[3] now (ms), ARGV[4] (resume) the next
  tick after max(cursor, now) (empty: none)

  Returns 1 done, 0 no such schedule.
]]
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local now = tonumber(ARGV[3])
local pending = redis.call('HGET', KEYS[2], 'pending')
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[2], 'paused', '1', 'updated_at', now)
  if not pending then redis.call('ZADD', KEYS[1], '+inf', ARGV[1]) end
  return 1
end
if redis.call('HGET', KEYS[2], 'paused') ~= '1' then return 1 end
local after = tonumber(redis.call('HGET', KEYS[2], 'after') or '0')
if after < now then after = now end
redis.call('HSET', KEYS[2], 'paused', '0', 'after', after, 'next', ARGV[4], 'updated_at', now)
if not pending then
  local score = '+inf'
  if ARGV[4] ~= '' then score = ARGV[4] end
  redis.call('ZADD', KEYS[1], score, ARGV[1])
end
return 1
