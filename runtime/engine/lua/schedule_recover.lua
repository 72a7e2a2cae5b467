--[[
  Take over a tick whose lease ended before its job was confirmed (the process holding it
  stopped): this process gets a new lease and enqueues it again, under the same job id.

  KEYS[1] schedule index, KEYS[2] the schedule's hash
  ARGV[1] name, ARGV[2] the pending tick read, ARGV[3] now (ms), ARGV[4] lease (ms)

  Returns 1 taken over, 0 refused (confirmed meanwhile, or another lease holds).
]]
local state = redis.call('HMGET', KEYS[2], 'pending', 'pending_until')
local now = tonumber(ARGV[3])
if state[1] ~= ARGV[2] or tonumber(state[2]) > now then return 0 end
local lease_until = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[2], 'pending_until', lease_until)
redis.call('ZADD', KEYS[1], lease_until, ARGV[1])
return 1
