-- racelab `cas`: write the journey only if its version is still the one the updater read, and
-- stamp a new version with it. The original challenge's published optimistic fix, made atomic.
--
-- KEYS[1]: the journey's version. KEYS[2]: the journey document. KEYS[3]: each updater's last
-- applied write id (a hash).
-- ARGV[1]: the version the updater read. ARGV[2]: the new document. ARGV[3]: the updater.
-- ARGV[4]: the update's write id, recorded under ARGV[3] in KEYS[3] so that a write whose reply
-- never came is resolved by reading it.
-- KEYS[4]: the run's admission hash; ARGV[5], ARGV[6]: a worker and its token ('' outside a
-- worker): a worker the coordinator struck off the run is refused (README "Workers").
-- Returns the new version, or 0 when someone wrote in between (a conflict: read again).
if ARGV[6] ~= '' and redis.call('HGET', KEYS[4], ARGV[5]) ~= ARGV[6] then
  return redis.error_reply('FENCED this worker was taken for gone and struck off the run')
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'KEEPTTL')
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
return redis.call('INCR', KEYS[1])
