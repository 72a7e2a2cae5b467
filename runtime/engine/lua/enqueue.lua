--[[
  Store new jobs: waiting ones on the stream, delayed ones in the delayed set.

  KEYS[1] stream
  KEYS[2] delayed set
  ARGV[1] job hash prefix
  ARGV[2] now (ms)
  ARGV[3..] per job, 3 values: job id, message, delay ms (0: run now)

  Returns one flag per job: 1 created, 0 not enqueued because the id exists already
  (idempotent enqueue).
]]
local prefix, now = ARGV[1], ARGV[2]
local created = {}
for i = 3, #ARGV, 3 do
  local id, data, delay = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local key = prefix .. id
  if redis.call('EXISTS', key) == 1 then
    created[#created + 1] = 0
  else
    if delay > 0 then
      -- due from the same `now` as enqueued_at, however long the call waited to be sent
      local due = tonumber(now) + delay
      redis.call('HSET', key, 'state', 'delayed', 'enqueued_at', now, 'due_at', due,
                 'attempts', 0, 'failures', 0, 'data', data)
      redis.call('ZADD', KEYS[2], due, id)
    else
      redis.call('HSET', key, 'state', 'waiting', 'enqueued_at', now, 'attempts', 0, 'failures', 0)
      redis.call('XADD', KEYS[1], '*', 'data', data)
    end
    created[#created + 1] = 1
  end
end
return created
