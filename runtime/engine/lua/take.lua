--[[
  Take up to ARGV[5] jobs for this consumer, highest priority first: due delayed jobs
  join the waiting set, then jobs leave it for the stream, read at once by this
  consumer (XREADGROUP: the pending entry is the claim every later script checks).
  Nothing is taken while the channel is paused or held back by a RetryAfter.

  Entries already on the stream and not yet delivered (a taskiq producer's XADD) are
  taken first.

  KEYS[1] stream, KEYS[2] waiting set, KEYS[3] delayed set, KEYS[4] sequence,
  KEYS[5] marker, KEYS[6] paused flag, KEYS[7] channel back-off
  KEYS[last - 1] event stream, KEYS[last] channel meta (include/events.lua)
  ARGV[1] job hash prefix
  ARGV[2] consumer group
  ARGV[3] this consumer
  ARGV[4] now (ms)
  ARGV[5] most jobs to take
  ARGV[6] most delayed jobs to move
  ARGV[7] the channel's default priority (for jobs stored without one)

  Returns {entries {stream id, message} in start order, due ms of the next delayed job
  or false, hold: 0, -1 paused, or ms the channel is held back}.
]]
--- @include "include/events.lua"
--- @include "include/wait.lua"
local prefix, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local now, most = tonumber(ARGV[4]), tonumber(ARGV[5])
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
for _, id in ipairs(due) do
  local key = prefix .. id
  -- a retry of a job a taskiq producer wrote to the stream has a hash but no priority
  local priority = redis.call('HGET', key, 'priority')
  if priority or redis.call('EXISTS', key) == 1 then
    push_waiting(KEYS[2], KEYS[4], key, id, tonumber(priority or ARGV[7]))
    redis.call('HDEL', key, 'due_at')
    emit('waiting', id, nil)
  end
end
if #due > 0 then redis.call('ZREM', KEYS[3], unpack(due)) end
local next_due = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2] or false

local hold = 0
if redis.call('EXISTS', KEYS[6]) == 1 then
  hold = -1
else
  local backoff = redis.call('PTTL', KEYS[7])
  if backoff > 0 then hold = backoff end
end
local entries = {}
if hold == 0 and most > 0 then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', most,
                          'STREAMS', KEYS[1], '>')
  if read then
    for _, entry in ipairs(read[1][2]) do entries[#entries + 1] = {entry[1], entry[2][2]} end
  end
  local wanted = most - #entries
  if wanted > 0 then
    local popped = redis.call('ZPOPMIN', KEYS[2], wanted)
    local added = 0
    for i = 1, #popped, 2 do
      local key = prefix .. popped[i]
      local data = redis.call('HGET', key, 'data')
      if data then
        redis.call('XADD', KEYS[1], '*', 'data', data)
        redis.call('HDEL', key, 'data')
        added = added + 1
      end
    end
    if added > 0 then
      read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', added,
                        'STREAMS', KEYS[1], '>')
      for _, entry in ipairs(read[1][2]) do entries[#entries + 1] = {entry[1], entry[2][2]} end
    end
  end
  -- jobs are left: wake the next blocked worker (this one comes back when it has room)
  if redis.call('ZCARD', KEYS[2]) > 0 then redis.call('ZADD', KEYS[5], 0, '0') end
end
return {entries, next_due, hold}
