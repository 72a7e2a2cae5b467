--[[
  Pause or resume a channel across every process: while the flag is set, take.lua,
  start.lua and reclaim.lua start nothing; a resume wakes blocked workers at once.

  KEYS[1] paused flag, KEYS[2] marker
  KEYS[last - 1] event stream, KEYS[last] channel meta (include/events.lua)
  ARGV[1] 'pause' or 'resume'
  ARGV[2] now (ms)

  Returns 1 when the channel's state changed, 0 when it was so already.
]]
--- @include "include/events.lua"
if ARGV[1] == 'pause' then
  if redis.call('SET', KEYS[1], ARGV[2], 'NX') then
    emit('paused', '', nil)
    return 1
  end
  return 0
end
redis.call('ZADD', KEYS[2], 0, '0')
if redis.call('DEL', KEYS[1]) == 1 then
  emit('resumed', '', nil)
  return 1
end
return 0
