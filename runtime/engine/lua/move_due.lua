--[[
  Move delayed jobs (and retries) that are due onto the stream.

  KEYS[1] delayed set, KEYS[2] stream
  ARGV[1] job hash prefix
  ARGV[2] now (ms)
  ARGV[3] most jobs to move

  Returns {moved, due ms of the next delayed job or false}.
]]
local prefix = ARGV[1]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do
  local key = prefix .. id
  local data = redis.call('HGET', key, 'data')
  if data then
    redis.call('XADD', KEYS[2], '*', 'data', data)
    redis.call('HSET', key, 'state', 'waiting')
    redis.call('HDEL', key, 'data', 'due_at')
  end
  redis.call('ZREM', KEYS[1], id)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, next[2] or false}
