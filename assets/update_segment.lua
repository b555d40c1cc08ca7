-- racelab `lua` and `function` strategies: the seed's read-modify-write done inside Redis, so
-- nothing can come between the read and the write.
--
-- KEYS[1]: the journey's JSON document. ARGV[1]: segment id. ARGV[2]: the new status.
-- Returns the segment's new UpdateCount, 0 when the journey is missing, -1 when the segment is.
local doc = redis.call('GET', KEYS[1])
if not doc then
  return 0
end
local journey = cjson.decode(doc)
for _, segment in ipairs(journey['Segments']) do
  if segment['SegmentId'] == ARGV[1] then
    segment['Status'] = ARGV[2]
    segment['UpdateCount'] = (tonumber(segment['UpdateCount']) or 0) + 1
    redis.call('SET', KEYS[1], cjson.encode(journey), 'KEEPTTL')
    return segment['UpdateCount']
  end
end
return -1
