-- racelab `lua` and `function` strategies: the seed's read-modify-write done inside Redis, so
-- nothing can come between the read and the write.
--
-- KEYS[1]: the journey's JSON document. KEYS[2]: each updater's last applied write id (a hash).
-- ARGV[1]: segment id. ARGV[2]: the new status.
-- ARGV[3]: "invariant" for write skew (write only if no other segment is Boarding), else "-".
-- ARGV[4]: the update's write id, stored as the journey's RacelabWrite (README "History"), and
-- in KEYS[2] under ARGV[5], the updater: a write whose reply never came is resolved by reading it.
-- Returns {reply, previous write id, previous status}: reply is the segment's new UpdateCount, 0
-- when the journey is missing, -1 when the segment is, -2 when the invariant declined the update;
-- the rest is what the script read (the journey's last writer, the segment's status).
local doc = redis.call('GET', KEYS[1])
if not doc then
  return {0, 0, ''}
end
local journey = cjson.decode(doc)
local previous = tonumber(journey['RacelabWrite']) or 0
local mine = nil
for _, segment in ipairs(journey['Segments']) do
  if segment['SegmentId'] == ARGV[1] then
    mine = segment
  elseif ARGV[3] == 'invariant' and segment['Status'] == 'Boarding' then
    return {-2, previous, ''}
  end
end
if not mine then
  return {-1, previous, ''}
end
local was = mine['Status']
mine['Status'] = ARGV[2]
mine['UpdateCount'] = (tonumber(mine['UpdateCount']) or 0) + 1
journey['RacelabWrite'] = tonumber(ARGV[4])
redis.call('SET', KEYS[1], cjson.encode(journey), 'KEEPTTL')
redis.call('HSET', KEYS[2], ARGV[5], ARGV[4])
return {mine['UpdateCount'], previous, was}
