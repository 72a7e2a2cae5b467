--[[
  One step of a bulk operation on a channel: at most ARGV[3] jobs, so that a channel
  with a million jobs never blocks Redis in one call (the caller repeats the step until
  it does fewer than that).

  KEYS[1] waiting set, KEYS[2] delayed set, KEYS[3] failed set, KEYS[4] cancelled set,
  KEYS[5] sequence, KEYS[6] marker
  KEYS[last - 1] event stream, KEYS[last] channel meta (include/events.lua)
  ARGV[1] job hash prefix
  ARGV[2] operation:
            retry_failed     failed jobs wait again at their priority, failures reset
            discard_failed   failed jobs are removed
            cancel_waiting   waiting jobs are cancelled
            cancel_delayed   delayed jobs (and retries waiting) are cancelled
  ARGV[3] most jobs in this step
  ARGV[4] now (ms)
  ARGV[5] the channel's default priority (for jobs stored without one)

  Returns how many jobs this step changed.
]]
--- @include "include/events.lua"
--- @include "include/wait.lua"
local prefix, op, most, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local source = ({retry_failed = KEYS[3], discard_failed = KEYS[3],
                 cancel_waiting = KEYS[1], cancel_delayed = KEYS[2]})[op]
if not source then return redis.error_reply('unknown bulk operation ' .. op) end
local ids = redis.call('ZRANGE', source, 0, most - 1)
if #ids == 0 then return 0 end
redis.call('ZREM', source, unpack(ids))
for _, id in ipairs(ids) do
  local key = prefix .. id
  if op == 'discard_failed' then
    redis.call('DEL', key)
    emit('discarded', id, nil)
  elseif op == 'retry_failed' then
    local priority = tonumber(redis.call('HGET', key, 'priority') or ARGV[5])
    push_waiting(KEYS[1], KEYS[5], key, id, priority)
    redis.call('HSET', key, 'failures', 0)
    redis.call('HDEL', key, 'finished_at')
    emit('retried', id, nil)
  else
    redis.call('HSET', key, 'state', 'cancelled', 'finished_at', now)
    redis.call('HDEL', key, 'due_at')
    redis.call('ZADD', KEYS[4], now, id)
    emit('cancelled', id, nil)
  end
end
if op == 'retry_failed' then redis.call('ZADD', KEYS[6], 0, '0') end
return #ids
