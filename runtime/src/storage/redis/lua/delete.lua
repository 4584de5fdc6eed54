-- delete: removes every key of a job. Its running attempts learn it at their next heartbeat.
-- KEYS: the job's keys
-- Returns 1 if the job existed, else 0.
local existed = redis.call('EXISTS', KEYS[K_SPEC])
redis.call('DEL', unpack(KEYS))
return existed
