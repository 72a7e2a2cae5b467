--[[
  limit(key, total_key, window, max, wanted, token) -> granted, wait, used

  A sliding log of grants: at most `max` starts in any `window` ms, on Redis's clock so
  that every process agrees. One member per grant call (`token:count`, scored by its
  time) and the running total in `total_key`: a batch of 100 starts costs one ZADD.
  Returns how many of `wanted` are granted, the wait in ms until the next grant is
  possible (0 when all were granted), and the grants now in the window.
]]
local function limit(key, total_key, window, max, wanted, token)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local expired = redis.call('ZRANGEBYSCORE', key, '-inf', now - window)
  if #expired > 0 then
    local gone = 0
    for _, member in ipairs(expired) do
      gone = gone + tonumber(string.match(member, ':(%d+)$'))
    end
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    redis.call('DECRBY', total_key, gone)
  end
  local used = math.max(0, tonumber(redis.call('GET', total_key) or '0'))
  local granted = math.max(0, math.min(wanted, max - used))
  if granted > 0 then
    redis.call('ZADD', key, now, token .. ':' .. granted)
    redis.call('INCRBY', total_key, granted)
    redis.call('PEXPIRE', key, window)
    redis.call('PEXPIRE', total_key, window)
  end
  local wait = 0
  if granted < wanted then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    wait = oldest[2] and math.max(1, tonumber(oldest[2]) + window - now) or 1
  end
  return granted, wait, used + granted
end
