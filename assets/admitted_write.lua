-- racelab: a worker's write, made only while the worker is still admitted to the run (README
-- "Workers"). The coordinator strikes a worker it took for gone off the run's admission hash, so
-- a write a stalled worker sends after that is refused here, whatever the strategy.
--
-- KEYS[1]: the run's admission hash. KEYS[2..]: the keys the write touches.
-- ARGV[1]: the worker. ARGV[2]: its token. ARGV[3..]: the write: one or more commands, each
-- given as its number of words and then the words.
-- Returns the last command's reply, or the error FENCED when the worker is not admitted.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return redis.error_reply('FENCED this worker was taken for gone and struck off the run')
end
local reply = nil
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  reply = redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return reply
