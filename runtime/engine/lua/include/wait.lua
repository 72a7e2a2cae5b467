--[[
  push_waiting(waiting, sequence, key, id, priority)

  Makes job `id` (its hash at `key`) wait to start: in the waiting set by priority
  (1 first), FIFO within one priority (the channel's sequence breaks ties). The caller
  sets the channel's marker so that a blocked worker wakes.
]]
local PRIORITY_SPAN = 17592186044416  -- 2^44 sequence numbers per priority
local function push_waiting(waiting, sequence, key, id, priority)
  local order = redis.call('INCR', sequence)
  redis.call('ZADD', waiting, priority * PRIORITY_SPAN + order, id)
  redis.call('HSET', key, 'state', 'waiting')
end
