-- delete: removes every key of a job. Its running attempts learn it at their next heartbeat.
-- KEYS: the job's keys
-- Returns the job's spec (JSON), for its files to be let go, or false if there was no such job.
local spec = redis.call('GET', KEYS[K_SPEC])
-- UNLINK, not DEL: a finished job of millions of values holds hashes of millions of fields,
-- which DEL would free inside the script while every client waits; UNLINK frees them on a
-- background thread.
redis.call('UNLINK', unpack(KEYS))
return spec
