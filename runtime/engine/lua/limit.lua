--[[
  Grant starts in one rate-limit window (a keyed limiter's group).

  Nothing is granted while a handler's RetryAfter holds the group back (KEYS[3]).

  KEYS[1] limiter window, KEYS[2] limiter total, KEYS[3] the group's back-off
  ARGV[1] window ms
  ARGV[2] max starts in a window
  ARGV[3] starts wanted
  ARGV[4] grant token

  Returns {granted, wait ms until the next grant is possible}.
]]
--- @include "include/limit.lua"
local backoff = redis.call('PTTL', KEYS[3])
if backoff > 0 then return {0, backoff} end
local window, max, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local granted, wait = limit(KEYS[1], KEYS[2], window, max, wanted, ARGV[4])
return {granted, wait}
