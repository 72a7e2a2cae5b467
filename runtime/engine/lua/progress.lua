--[[
  Store a running job's progress (a number or a small JSON object, as JSON), while the
  run that reports it still holds the job's claim (see include/claim.lua).

  KEYS[1] stream
  KEYS[2] the job's hash (declared, not built from a prefix: while the channel's slot
          migrates to another primary, Redis then sends this script where its keys are,
          or answers TRYAGAIN, instead of letting it write a job hash that has not moved
          yet on the target, which would make the MIGRATE of that hash fail: BUSYKEY)
  KEYS[last - 1] event stream, KEYS[last] channel meta (include/events.lua)
  ARGV[1] consumer group
  ARGV[2] this consumer
  ARGV[3] stream id, ARGV[4] delivery count of the claim
  ARGV[5] job id
  ARGV[6] progress as JSON
  ARGV[7] now (ms)

  Returns 1 when stored, 0 when the claim is gone (the job was taken over).
]]
--- @include "include/claim.lua"
--- @include "include/events.lua"
if not holds_claim(KEYS[1], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])) then return 0 end
redis.call('HSET', KEYS[2], 'progress', ARGV[6], 'progress_at', ARGV[7])
emit('progress', ARGV[5], '{"progress":' .. ARGV[6] .. '}')
return 1
