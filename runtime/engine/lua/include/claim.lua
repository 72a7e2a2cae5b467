--[[
  holds_claim(stream, group, consumer, sid, delivery) -> boolean

  True while the stream entry `sid` is pending for `consumer` with the delivery count
  `delivery`: the run that read it (or took it over) under that count still owns the
  job. Another consumer's take-over, an ack, or a later delivery ends the claim.
]]
local function holds_claim(stream, group, consumer, sid, delivery)
  local claim = redis.call('XPENDING', stream, group, sid, sid, 1)[1]
  return claim ~= nil and claim[2] == consumer and claim[4] == delivery
end
