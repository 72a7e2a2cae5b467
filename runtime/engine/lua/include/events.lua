--[[
  emit(event, job id, data JSON or nil)
  Job events: a script that changes a job's (or the channel's) state appends one entry
  per change to the channel's event stream, in the same call (runtime.engine.events
  reads them). The calling script passes the stream and the channel's meta hash as its
  last two KEYS.

  The stream is capped at the meta hash's `events_max` (runtime serve writes it from
  channels.yaml; DEFAULT_EVENTS_MAX while unset; 0 turns events off), trimmed in whole
  nodes (MAXLEN ~), so at least that many entries stay.

  Entry ids are `<ms>-<seq>`: seq counts the channel's events one by one, so a reader
  that resumes after id ...-41 and next finds ...-45 knows it missed three (trimmed
  before it read them): it is told, never silently skipped. ms is Redis's clock, never
  below the previous entry's. Every entry has the same three fields, so Redis stores
  their names once per node: event, job ('' for the channel's own events), data (JSON,
  '' when the event adds nothing).
]]
local DEFAULT_EVENTS_MAX = 10000
local events_stream, events_meta = KEYS[#KEYS - 1], KEYS[#KEYS]
local events_max, events_ms, events_seq = nil, 0, 0
local function emit(event, job, data)
  if events_max == nil then
    events_max = tonumber(redis.call('HGET', events_meta, 'events_max') or DEFAULT_EVENTS_MAX)
    if events_max > 0 then
      local time = redis.call('TIME')
      events_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
      local last = redis.call('XREVRANGE', events_stream, '+', '-', 'COUNT', 1)[1]
      if last then
        local ms, seq = string.match(last[1], '^(%d+)-(%d+)$')
        events_ms = math.max(events_ms, tonumber(ms))
        events_seq = tonumber(seq)
      end
    end
  end
  if events_max <= 0 then return end
  events_seq = events_seq + 1
  redis.call('XADD', events_stream, 'MAXLEN', '~', events_max,
             string.format('%d-%d', events_ms, events_seq),
             'event', event, 'job', job, 'data', data or '')
end

-- The data of an event that reports an error: its type and message (the traceback
-- stays on the job), and what else the event adds (a table).
local function error_data(err, extra)
  local data = extra or {}
  local ok, record = pcall(cjson.decode, err)
  if ok and type(record) == 'table' then
    data['error'] = {type = record['type'], message = record['message']}
  end
  return cjson.encode(data)
end
