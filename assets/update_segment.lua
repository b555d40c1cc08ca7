-- racelab `lua` and `function` strategies: the seed's read-modify-write done inside Redis, so
-- nothing can come between the read and the write.
--
-- KEYS[1]: the journey's JSON document. KEYS[2]: each updater's last applied write id (a hash).
-- ARGV[1]: segment id. ARGV[2]: the new status.
-- ARGV[3]: "invariant" for write skew (write only if no other segment is Boarding), else "-".
-- ARGV[4]: the update's write id, stored as the journey's RacelabWrite (README "History"), and
-- in KEYS[2] under ARGV[5], the updater: a write whose reply never came is resolved by reading it.
-- KEYS[3]: the run's admission hash; ARGV[6], ARGV[7]: a worker and its token ('' outside a
-- worker): a worker the coordinator struck off the run is refused (README "Workers").
-- Returns {reply, previous write id, previous status}: reply is the segment's new UpdateCount, 0
-- when the journey is missing, -1 when the segment is, -2 when the invariant declined the update;
-- the rest is what the script read (the journey's last writer, the segment's status).
if ARGV[7] ~= '' and redis.call('HGET', KEYS[3], ARGV[6]) ~= ARGV[7] then
  return redis.error_reply('FENCED this worker was taken for gone and struck off the run')
end
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
