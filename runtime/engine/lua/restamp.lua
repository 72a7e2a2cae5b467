--[[
  Date one grant call to now, once its jobs have started, so that the window counts
  from the starts. A grant that left the window meanwhile is not brought back (XX).

  KEYS[1] limiter window, KEYS[2] limiter total
  ARGV[1] window ms
  ARGV[2] grant token
  ARGV[3] starts granted by that call

  Returns 1.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now, ARGV[2] .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
