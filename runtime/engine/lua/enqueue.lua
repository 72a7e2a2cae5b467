--[[
  Store new jobs: waiting ones in the waiting set (by priority, then FIFO), delayed ones
  in the delayed set; the message stays in the job hash until a worker takes the job.

  KEYS[1] waiting set, KEYS[2] delayed set, KEYS[3] sequence, KEYS[4] marker
  KEYS[last - 1] event stream, KEYS[last] channel meta (include/events.lua)
  ARGV[1] job hash prefix
  ARGV[2] now (ms)
  ARGV[3..] per job, 4 values: job id, message, delay ms (0: run now), priority

  Returns one flag per job: 1 created, 0 not enqueued because the id exists already
  (idempotent enqueue).
]]
--- @include "include/events.lua"
--- @include "include/wait.lua"
local prefix, now = ARGV[1], ARGV[2]
local created = {}
local ready = false
for i = 3, #ARGV, 4 do
  local id, data, delay, priority = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local key = prefix .. id
  if redis.call('EXISTS', key) == 1 then
    created[#created + 1] = 0
  else
    redis.call('HSET', key, 'enqueued_at', now, 'attempts', 0, 'failures', 0,
               'priority', priority, 'data', data)
    if delay > 0 then
      -- due from the same `now` as enqueued_at, however long the call waited to be sent
      local due = tonumber(now) + delay
      redis.call('HSET', key, 'state', 'delayed', 'due_at', due)
      redis.call('ZADD', KEYS[2], due, id)
      redis.call('ZADD', KEYS[4], 'LT', due, 'd')
      emit('delayed', id, '{"due_at":' .. due .. ',"priority":' .. priority .. '}')
    else
      push_waiting(KEYS[1], KEYS[3], key, id, tonumber(priority))
      ready = true
      emit('waiting', id, '{"priority":' .. priority .. '}')
    end
    created[#created + 1] = 1
  end
end
if ready then redis.call('ZADD', KEYS[4], 0, '0') end
return created
