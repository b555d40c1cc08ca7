-- racelab `--workers`: a coordinator claims a waiting worker. The claim holds only if the
-- worker's card is alive (it expires when the worker stops renewing it) and no other session
-- claimed it first, so two coordinators never share a worker and a dead one is never claimed.
--
-- KEYS[1]: the worker's card. ARGV[1]: the claiming session.
-- Returns the worker's host and pid, or nil when it could not be claimed.
if redis.call('HEXISTS', KEYS[1], 'host') == 1
  and redis.call('HSETNX', KEYS[1], 'session', ARGV[1]) == 1 then
  return redis.call('HMGET', KEYS[1], 'host', 'pid')
end
return false
