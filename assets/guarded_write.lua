-- racelab: a write made only once, and only by a worker still admitted to the run (README
-- "Workers", "Cluster"). Used by a worker's writes and by every write on a Redis Cluster, whose
-- client sends a command again after a dropped connection, even when Redis had already run it.
--
-- KEYS[1]: the run's admission hash. KEYS[2]: each updater's last applied write id (a hash).
-- KEYS[3..]: the keys the write touches.
-- ARGV[1]: the worker ('' outside a worker). ARGV[2]: its token. ARGV[3]: the updater.
-- ARGV[4]: the update's write id ('0': none, nothing is checked or recorded). ARGV[5..]: the write: one or more commands, each given as its
-- number of words and then the words.
-- Returns the last command's reply; the error FENCED when the worker is not admitted; the error
-- ALREADY when this update's write was made before (a resend): it is not made twice.
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return redis.error_reply('FENCED this worker was taken for gone and struck off the run')
end
if ARGV[4] ~= '0' and redis.call('HGET', KEYS[2], ARGV[3]) == ARGV[4] then
  return redis.error_reply('ALREADY this update was written before')
end
local reply = nil
local i = 5
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  reply = redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
if ARGV[4] ~= '0' then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
end
return reply
