--[[
  Put jobs this consumer read but never started back at the end of the stream, so that
  a stopping process leaves them to others at once instead of after the stalled interval.
  Fenced like finish.lua: an entry whose claim this consumer lost meanwhile (another
  process took it over) is left to its owner.

  KEYS[1] stream
  ARGV[1] consumer group
  ARGV[2] this consumer
  ARGV[3..] per job, 3 values: stream id, delivery count of the claim, message

  Returns how many entries were put back.
]]
--- @include "include/claim.lua"
local group, consumer = ARGV[1], ARGV[2]
local requeued = 0
for i = 3, #ARGV, 3 do
  local sid, delivery = ARGV[i], tonumber(ARGV[i + 1])
  if holds_claim(KEYS[1], group, consumer, sid, delivery) then
    redis.call('XADD', KEYS[1], '*', 'data', ARGV[i + 2])
    redis.call('XACK', KEYS[1], group, sid)
    redis.call('XDEL', KEYS[1], sid)
    requeued = requeued + 1
  end
end
return requeued
