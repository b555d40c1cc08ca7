-- A fix for the seed's bug, as a script of your own: racelab run -s lua:examples/lua/fix.lua
-- KEYS[1] is the journey (the seed's JSON); ARGV[1] the segment id, ARGV[2] the new status,
-- ARGV[3] the updater (1-based). An error reply refuses the update; anything else applies it.
--
-- It is the seed's read-modify-write, GET then SET, with a second call between them where the
-- seed waits 10 ms. Inside a script that is still atomic: Redis runs a script to its end before
-- any other client's command, so nothing can come between this GET and this SET.
local doc = redis.call('GET', KEYS[1])
if not doc then
  return redis.error_reply('journey ' .. KEYS[1] .. ' not found')
end
local journey = cjson.decode(doc)
redis.call('TIME') -- the seed's pause: no other command runs meanwhile
for _, segment in ipairs(journey.Segments) do
  if segment.SegmentId == ARGV[1] then
    segment.Status = ARGV[2]
    segment.UpdateCount = (segment.UpdateCount or 0) + 1
    -- KEEPTTL keeps racelab's safety-net expiry on the journey.
    redis.call('SET', KEYS[1], cjson.encode(journey), 'KEEPTTL')
    return 1
  end
end
return redis.error_reply('segment ' .. ARGV[1] .. ' not found')
