--[[
  Store a running job's progress (a number or a small JSON object, as JSON), while the
  run that reports it still holds the job's claim (see include/claim.lua).

  KEYS[1] stream
  KEYS[last - 1] event stream, KEYS[last] channel meta (include/events.lua)
  ARGV[1] job hash prefix
  ARGV[2] consumer group
  ARGV[3] this consumer
  ARGV[4] stream id, ARGV[5] delivery count of the claim
  ARGV[6] job id
  ARGV[7] progress as JSON
  ARGV[8] now (ms)

  Returns 1 when stored, 0 when the claim is gone (the job was taken over).
]]
--- @include "include/claim.lua"
--- @include "include/events.lua"
if not holds_claim(KEYS[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])) then return 0 end
redis.call('HSET', ARGV[1] .. ARGV[6], 'progress', ARGV[7], 'progress_at', ARGV[8])
emit('progress', ARGV[6], '{"progress":' .. ARGV[7] .. '}')
return 1
