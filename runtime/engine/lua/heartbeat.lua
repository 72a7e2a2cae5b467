--[[
  Reset the idle time of the jobs this consumer still owns: a heartbeat (XCLAIM JUSTID
  does not bump the delivery count).

  KEYS[1] stream
  ARGV[1] consumer group
  ARGV[2] this consumer
  ARGV[3..] stream ids of the jobs it runs or holds

  Returns the stream ids it no longer owns: another process took them over.
]]
local group, consumer = ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1)[1]
  if pending and pending[2] == consumer then
    redis.call('XCLAIM', KEYS[1], group, consumer, 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
