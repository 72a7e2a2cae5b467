--[[
  Grant starts in one rate-limit window (a keyed limiter's group).

  KEYS[1] limiter window, KEYS[2] limiter total
  ARGV[1] window ms
  ARGV[2] max starts in a window
  ARGV[3] starts wanted
  ARGV[4] grant token

  Returns {granted, wait ms until the next grant is possible}.
]]
--- @include "include/limit.lua"
local window, max, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local granted, wait = limit(KEYS[1], KEYS[2], window, max, wanted, ARGV[4])
return {granted, wait}
