--[[
  Remove a schedule: its hash and its place in the index. Jobs it enqueued stay.

  KEYS[1] schedule index, KEYS[2] the schedule's hash
  ARGV[1] name

  Returns 1 removed, 0 no such schedule.
]]
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('DEL', KEYS[2])
