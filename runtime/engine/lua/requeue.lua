--[[
  Give back jobs this consumer took but never started (held by the rate limit when the
  process stops): they wait again at their priority, for any process to take at once
  instead of after the stalled interval. Fenced like finish.lua: an entry whose claim
  this consumer lost meanwhile (another process took it over) is left to its owner.

  KEYS[1] stream, KEYS[2] waiting set, KEYS[3] sequence, KEYS[4] marker
  ARGV[1] consumer group
  ARGV[2] this consumer
  ARGV[3] job hash prefix
  ARGV[4] the channel's default priority (for jobs stored without one)
  ARGV[5..] per job, 4 values: stream id, delivery count of the claim, job id, message

  Returns how many jobs were given back.
]]
--- @include "include/claim.lua"
--- @include "include/wait.lua"
local group, consumer, prefix = ARGV[1], ARGV[2], ARGV[3]
local requeued = 0
for i = 5, #ARGV, 4 do
  local sid, delivery, id = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  if holds_claim(KEYS[1], group, consumer, sid, delivery) then
    local key = prefix .. id
    local priority = tonumber(redis.call('HGET', key, 'priority') or ARGV[4])
    redis.call('HSET', key, 'data', ARGV[i + 3])
    push_waiting(KEYS[2], KEYS[3], key, id, priority)
    redis.call('XACK', KEYS[1], group, sid)
    redis.call('XDEL', KEYS[1], sid)
    requeued = requeued + 1
  end
end
if requeued > 0 then redis.call('ZADD', KEYS[4], 0, '0') end
return requeued
