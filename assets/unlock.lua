-- racelab `lock` and `fenced`: release the journey's lock only if we still hold it. A plain DEL
-- after the lock expired would release someone else's lock.
--
-- KEYS[1]: the lock. ARGV[1]: our token. Returns 1 when released, 0 when it was not ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
