-- racelab `cas`: write the journey only if its version is still the one the updater read, and
-- stamp a new version with it. The original challenge's published optimistic fix, made atomic.
--
-- KEYS[1]: the journey's version. KEYS[2]: the journey document.
-- ARGV[1]: the version the updater read. ARGV[2]: the new document.
-- Returns the new version, or 0 when someone wrote in between (a conflict: read again).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'KEEPTTL')
return redis.call('INCR', KEYS[1])
