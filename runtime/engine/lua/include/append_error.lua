--[[
  append_error(key, err)

  Stores `err` (a JobError record as JSON, written by runtime.engine.jobs.JobError) as
  the job's last error and appends it to its list of the last 10.
]]
local function append_error(key, err)
  local errors = {}
  local raw = redis.call('HGET', key, 'errors')
  if raw then errors = cjson.decode(raw) end
  table.insert(errors, cjson.decode(err))
  while #errors > 10 do table.remove(errors, 1) end
  redis.call('HSET', key, 'error', err, 'errors', cjson.encode(errors))
end
