--[[
  Take over jobs whose process stopped heartbeating. XAUTOCLAIM bumps the delivery
  count, so delivered - 1 is how often the job stalled; past the channel's maximum the
  job goes to the failed set instead.

  Nothing is taken over while the channel is paused: the jobs wait for the resume.

  KEYS[1] stream, KEYS[2] failed set, KEYS[3] paused flag
  KEYS[last - 1] event stream, KEYS[last] channel meta (include/events.lua)
  ARGV[1] job hash prefix
  ARGV[2] consumer group
  ARGV[3] this consumer
  ARGV[4] min idle ms (the stalled interval)
  ARGV[5] most jobs to take
  ARGV[6] max stalled count
  ARGV[7] now (ms)
  ARGV[8] error JSON stored on jobs that stalled too often

  Returns {{stream id, message, delivered} per job this consumer must now run,
  how many failed as stalled}.
]]
--- @include "include/append_error.lua"
--- @include "include/events.lua"
if redis.call('EXISTS', KEYS[3]) == 1 then return {{}, 0} end
local prefix, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local max_stalled, now, err = tonumber(ARGV[6]), ARGV[7], ARGV[8]
local claimed = redis.call('XAUTOCLAIM', KEYS[1], group, consumer, ARGV[4], '0-0',
                           'COUNT', ARGV[5])[2]
local out = {}
local failed = 0
for _, entry in ipairs(claimed) do
  if entry and entry[2] then
    local sid, data = entry[1], entry[2][2]
    local delivered = redis.call('XPENDING', KEYS[1], group, sid, sid, 1)[1][4]
    if delivered - 1 > max_stalled then
      local ok, message = pcall(cjson.decode, data)
      local id = (ok and type(message) == 'table' and message['task_id']) or ('poison-' .. sid)
      local key = prefix .. id
      append_error(key, err)
      redis.call('HINCRBY', key, 'failures', 1)
      redis.call('HSET', key, 'state', 'failed', 'finished_at', now, 'data', data)
      redis.call('ZADD', KEYS[2], now, id)
      redis.call('XACK', KEYS[1], group, sid)
      redis.call('XDEL', KEYS[1], sid)
      failed = failed + 1
      emit('failed', id, error_data(err, {stalled = delivered - 1}))
    else
      out[#out + 1] = {sid, data, delivered}
      local ok, message = pcall(cjson.decode, data)
      if ok and type(message) == 'table' and message['task_id'] then
        emit('stalled', message['task_id'], '{"stalled":' .. (delivered - 1) .. '}')
      end
    end
  end
end
return {out, failed}
