-- Wrong on purpose: racelab run -s lua:examples/lua/wrong_key.lua --expect lost
-- It reads the wrong key. To "save a round trip" it keeps a copy of the journey beside it and
-- reads that copy, made once, instead of the journey: every update writes the journey back
-- from the same old copy plus its own change, so each erases all the updates before it. Being
-- a script makes it atomic; it does not make it read the right data.
local cache = KEYS[1] .. ':cache'
local doc = redis.call('GET', cache)
if not doc then
  doc = redis.call('GET', KEYS[1])
  if not doc then
    return redis.error_reply('journey ' .. KEYS[1] .. ' not found')
  end
  redis.call('SET', cache, doc, 'PX', 600000)
end
local journey = cjson.decode(doc)
for _, segment in ipairs(journey.Segments) do
  if segment.SegmentId == ARGV[1] then
    segment.Status = ARGV[2]
    segment.UpdateCount = (segment.UpdateCount or 0) + 1
    redis.call('SET', KEYS[1], cjson.encode(journey), 'KEEPTTL')
    return 1
  end
end
return redis.error_reply('segment ' .. ARGV[1] .. ' not found')
