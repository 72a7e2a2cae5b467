--[[
  One page of a sorted set of jobs (failed, completed or delayed), newest first, keeping
  only jobs whose last error's type contains a text: the filter runs beside the data, so
  a page costs one round trip however many jobs it passes over, and never more than
  ARGV[6] of them (the caller continues from the rank returned).

  KEYS[1] the sorted set
  ARGV[1] job hash prefix
  ARGV[2] first rank to look at (0: the newest)
  ARGV[3] lowest score (ms) to look at; -1 for none
  ARGV[4] text the error's type must contain (plain text, not a pattern)
  ARGV[5] at most this many matches
  ARGV[6] at most this many jobs looked at

  Returns {matches, last id, last score, ended}: matches as a flat list id, score, id,
  score...; the last job looked at (where the next page starts after; '' when none);
  ended 1 when the set (or the score range) has no more jobs.
]]
local prefix, wanted = ARGV[1], ARGV[4]
local rank, low = tonumber(ARGV[2]), tonumber(ARGV[3])
local most, budget = tonumber(ARGV[5]), tonumber(ARGV[6])
local found, matches, looked = {}, 0, 0
local last_id, last_score = '', ''
while looked < budget and matches < most do
  local chunk = math.min(200, budget - looked)
  local rows = redis.call('ZREVRANGE', KEYS[1], rank, rank + chunk - 1, 'WITHSCORES')
  if #rows == 0 then return {found, last_id, last_score, 1} end
  for i = 1, #rows, 2 do
    local id, score = rows[i], rows[i + 1]
    if tonumber(score) < low then return {found, last_id, last_score, 1} end
    rank = rank + 1
    last_id, last_score = id, score
    looked = looked + 1
    local raw = redis.call('HGET', prefix .. id, 'error')
    -- decoded only when the text is in it somewhere: most jobs are passed over cheaply
    if raw and string.find(raw, wanted, 1, true) then
      local ok, error = pcall(cjson.decode, raw)
      if ok and type(error) == 'table' and type(error['type']) == 'string'
          and string.find(error['type'], wanted, 1, true) then
        found[#found + 1] = id
        found[#found + 1] = score
        matches = matches + 1
        if matches >= most then return {found, last_id, last_score, 0} end
      end
    end
  end
  if #rows < chunk * 2 then return {found, last_id, last_score, 1} end
end
return {found, last_id, last_score, 0}
