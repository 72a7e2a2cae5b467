--[[
  Move a schedule's cursor past the ticks that are due, and take the one tick to enqueue
  (if any) for this process: it holds a lease on it until schedule_done.lua. Refused when
  the schedule changed since the caller read it (its version or cursor), is paused, or
  another process holds a lease: of any number of processes, one takes each tick.

  KEYS[1] schedule index, KEYS[2] the schedule's hash
  ARGV[1] name, ARGV[2] version read, ARGV[3] cursor read ('after'), ARGV[4] new cursor,
  ARGV[5] now (ms), ARGV[6] lease (ms), ARGV[7] next tick after the new cursor (empty:
  none), ARGV[8] the tick to enqueue (empty: none, the due ticks are skipped)

  Returns 1 done, 0 refused.
]]
local name = ARGV[1]
local state = redis.call('HMGET', KEYS[2], 'version', 'after', 'paused', 'pending')
if not state[1] or state[1] ~= ARGV[2] or state[2] ~= ARGV[3] or state[3] == '1' or state[4] then
  return 0
end
redis.call('HSET', KEYS[2], 'after', ARGV[4], 'next', ARGV[7])
if ARGV[8] ~= '' then
  local lease_until = tonumber(ARGV[5]) + tonumber(ARGV[6])
  redis.call('HSET', KEYS[2], 'pending', ARGV[8], 'pending_until', lease_until)
  -- due again when the lease ends: a process that died holding it is taken over then
  redis.call('ZADD', KEYS[1], lease_until, name)
elseif ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[1], ARGV[7], name)
else
  redis.call('ZADD', KEYS[1], '+inf', name)
end
return 1
