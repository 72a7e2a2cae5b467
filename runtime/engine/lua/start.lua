--[[
  Start a batch of jobs read from the stream: grant starts under the channel's global
  rate limit (all of them without one), mark the granted jobs active and count their
  attempts. The rate limit costs no round trip of its own.

  KEYS[1] limiter window  } only when the channel has a global rate limit
  KEYS[2] limiter total   }
  ARGV[1] job hash prefix
  ARGV[2] now (ms)
  ARGV[3] window ms, ARGV[4] max starts in a window, ARGV[5] grant token (unused
          without a limiter)
  ARGV[6..] job ids, in the order they should start

  Returns {granted, wait ms until the next grant, {attempt, failures} per granted job
  in order, grants now in the window}.
]]
--- @include "include/limit.lua"
local prefix, now = ARGV[1], ARGV[2]
local wanted = #ARGV - 5
local granted, wait, used = wanted, 0, 0
if #KEYS > 0 then
  local window, max = tonumber(ARGV[3]), tonumber(ARGV[4])
  granted, wait, used = limit(KEYS[1], KEYS[2], window, max, wanted, ARGV[5])
end
local rows = {}
for i = 6, 5 + granted do
  local key = prefix .. ARGV[i]
  redis.call('HSET', key, 'state', 'active', 'started_at', now)
  local attempt = redis.call('HINCRBY', key, 'attempts', 1)
  local failures = tonumber(redis.call('HGET', key, 'failures') or '0') or 0
  rows[#rows + 1] = {attempt, failures}
end
return {granted, wait, rows, used}
