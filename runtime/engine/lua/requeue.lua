--[[
  Put jobs this consumer read but never started back at the end of the stream, so that
  a stopping process leaves them to others at once instead of after the stalled interval.

  KEYS[1] stream
  ARGV[1] consumer group
  ARGV[2..] per job, 2 values: stream id, message

  Returns 1.
]]
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[1], '*', 'data', ARGV[i + 1])
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return 1
