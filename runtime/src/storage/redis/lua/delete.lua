-- delete: removes every key of a job. Its running attempts learn it at their next heartbeat.
-- KEYS: the job's keys
-- Returns the job's spec (JSON), for its files to be let go, or false if there was no such job.
local spec = redis.call('GET', KEYS[K_SPEC])
redis.call('DEL', unpack(KEYS))
return spec
