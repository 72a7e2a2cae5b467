--[[
  Create or change one schedule (Client.schedules.upsert, and channels.yaml's at start).
  A definition equal to the stored one changes nothing: its cursor, pause state and
  history stay. A new or changed one starts from now: no tick before this call is owed.

  KEYS[1] the channel's schedule index (sorted set: name -> ms it is next due, +inf while
          paused or ended), KEYS[2] the schedule's hash
  ARGV[1] name, ARGV[2] definition (canonical JSON), ARGV[3] source (config or api),
  ARGV[4] paused (1 or 0, as declared), ARGV[5] now (ms), ARGV[6] its next tick after
  now (ms; empty: none)

  Returns 0 unchanged, 1 created, 2 changed.
]]
local name, now = ARGV[1], tonumber(ARGV[5])
local stored = redis.call('HGET', KEYS[2], 'spec')
if stored == ARGV[2] then
  redis.call('HSET', KEYS[2], 'source', ARGV[3])
  return 0
end
local after = tonumber(redis.call('HGET', KEYS[2], 'after') or '0')
if after < now then after = now end
redis.call('HSET', KEYS[2], 'spec', ARGV[2], 'source', ARGV[3], 'paused', ARGV[4],
           'after', after, 'next', ARGV[6], 'updated_at', now)
redis.call('HINCRBY', KEYS[2], 'version', 1)
if not stored then
  redis.call('HSET', KEYS[2], 'created_at', now, 'enqueued', 0)
end
-- a tick being enqueued keeps its lease as the score: its process finishes it
if not redis.call('HGET', KEYS[2], 'pending') then
  local score = '+inf'
  if ARGV[4] ~= '1' and ARGV[6] ~= '' then score = ARGV[6] end
  redis.call('ZADD', KEYS[1], score, name)
end
if stored then return 2 end
return 1
