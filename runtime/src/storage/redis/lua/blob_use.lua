-- blob_use: records that a job uses a stored manifest file, before the job is created, and says
-- whether the bytes are there. Once a job is among its users, the bytes stay until it lets go.
-- KEYS[1] the blob, KEYS[2] its users (SET of job ids)
-- ARGV[1] the job id
-- Returns 1 when the bytes are stored, 0 when they are to be uploaded.
redis.call('SADD', KEYS[2], ARGV[1])
return redis.call('EXISTS', KEYS[1])
