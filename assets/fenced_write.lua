-- racelab `fenced`: write the journey only if our fencing token is the newest one issued. A holder
-- whose lock expired holds an older token, so its stale write is refused instead of erasing the
-- work of the updater that took the lock after it.
--
-- KEYS[1]: the fencing-token counter. KEYS[2]: the journey document.
-- ARGV[1]: our token. ARGV[2]: the new document.
-- KEYS[3]: the run's admission hash; ARGV[3], ARGV[4]: a worker and its token ('' outside a
-- worker): a worker the coordinator struck off the run is refused (README "Workers").
-- Returns 1 when written, 0 when a newer token was issued since ours (read again).
if ARGV[4] ~= '' and redis.call('HGET', KEYS[3], ARGV[3]) ~= ARGV[4] then
  return redis.error_reply('FENCED this worker was taken for gone and struck off the run')
end
if tonumber(redis.call('GET', KEYS[1])) ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'KEEPTTL')
return 1
