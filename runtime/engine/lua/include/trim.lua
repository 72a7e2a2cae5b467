--[[
  trim(index, prefix, count, age, now)

  Retention of one finished set (completed or failed): removes the jobs older than `age`
  ms (0: no bound; at most 1000 a call) and then the oldest beyond `count` (-1: no bound),
  with their job hashes.
]]
local function trim(index, prefix, count, age, now)
  if age > 0 then
    local old = redis.call('ZRANGEBYSCORE', index, '-inf', now - age, 'LIMIT', 0, 1000)
    for _, id in ipairs(old) do redis.call('DEL', prefix .. id) end
    if #old > 0 then redis.call('ZREM', index, unpack(old)) end
  end
  if count >= 0 then
    local excess = redis.call('ZCARD', index) - count
    if excess > 0 then
      local ids = redis.call('ZRANGE', index, 0, excess - 1)
      for _, id in ipairs(ids) do redis.call('DEL', prefix .. id) end
      redis.call('ZREMRANGEBYRANK', index, 0, excess - 1)
    end
  end
end
