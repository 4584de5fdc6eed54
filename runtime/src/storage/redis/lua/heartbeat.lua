-- heartbeat: renews a lease and records the latest progress.
-- KEYS: the job's keys
-- ARGV[1] value, ARGV[2] task id, ARGV[3] lease time (ms), ARGV[4] progress (optional)
-- Returns the new deadline (ms), or when the attempt must stop -1 (the lease is no longer
-- current) or -2 (the job was deleted).
local lease = redis.call('HGET', KEYS[K_ACTIVE], ARGV[1])
if not lease then
  if redis.call('EXISTS', KEYS[K_STATE]) == 0 then
    return -2
  end
  return -1
end
local task, attempt, _, started, worker = decode_lease(lease)
if task ~= ARGV[2] then
  return -1
end
local deadline = now_ms() + tonumber(ARGV[3])
redis.call('HSET', KEYS[K_ACTIVE], ARGV[1], encode_lease(task, attempt, num(deadline), started, worker))
redis.call('ZADD', KEYS[K_DEADLINES], deadline, ARGV[1])
if ARGV[4] then
  redis.call('HSET', KEYS[K_PROGRESS], ARGV[1], ARGV[4])
end
return deadline
