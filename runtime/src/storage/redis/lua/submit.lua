-- submit: creates a job's keys.
-- KEYS: the job's keys (see the prelude)
-- ARGV[1] spec JSON, ARGV[2] pending interval set, ARGV[3] max_retries, ARGV[4] max_lost,
-- ARGV[5] max_concurrency (0 = none), ARGV[6] priority, ARGV[7] name, ARGV[8] the capped
-- limits the job asks for, ARGV[9..] manifest paths not uploaded yet
-- Returns the submission time (ms), or an error if the job exists.
if redis.call('EXISTS', KEYS[K_SPEC]) == 1 then
  return redis.error_reply('job already exists')
end
local now = now_ms()
redis.call('SET', KEYS[K_SPEC], ARGV[1])
redis.call('HSET', KEYS[K_STATE], 'pending', ARGV[2], 'succeeded', '', 'failed', '',
  'quarantined', '', 'max_retries', ARGV[3], 'max_lost', ARGV[4], 'max_concurrency', ARGV[5],
  'priority', ARGV[6], 'name', ARGV[7], 'submitted_at', num(now), 'limits', ARGV[8])
for i = 9, #ARGV do
  redis.call('SADD', KEYS[K_MISSING], ARGV[i])
end
return now
