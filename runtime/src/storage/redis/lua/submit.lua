-- submit: creates a job's keys.
-- KEYS: the job's keys (see the prelude)
-- ARGV[1] spec JSON, ARGV[2] its values, as the bounds of their intervals "s1 e1 s2 e2 ...",
-- ARGV[3] max_retries, ARGV[4] max_lost, ARGV[5] max_concurrency (0 = none), ARGV[6] priority,
-- ARGV[7] name, ARGV[8] the capped limits the job asks for, ARGV[9] how many values it has,
-- ARGV[10..] manifest paths not uploaded yet
-- Returns the submission time (ms), or an error if the job exists.
if redis.call('EXISTS', KEYS[K_SPEC]) == 1 then
  return redis.error_reply('job already exists')
end
local now = now_ms()
redis.call('SET', KEYS[K_SPEC], ARGV[1])
redis.call('HSET', KEYS[K_STATE], 'max_retries', ARGV[3], 'max_lost', ARGV[4],
  'max_concurrency', ARGV[5], 'priority', ARGV[6], 'name', ARGV[7], 'submitted_at', num(now),
  'limits', ARGV[8], 'n_values', ARGV[9], 'n_succeeded', 0, 'n_failed', 0, 'n_quarantined', 0)
-- The intervals as they come: the Rust side wrote them from a RangeSet, in order and apart.
local members, bounds = {}, {}
for bound in string.gmatch(ARGV[2], '%d+') do
  bounds[#bounds + 1] = bound
  if #bounds == 2 then
    push(members, bounds[1], bounds[1] .. ' ' .. bounds[2])
    bounds = {}
  end
end
call_each('ZADD', KEYS[K_PENDING], members)
for i = 10, #ARGV do
  redis.call('SADD', KEYS[K_MISSING], ARGV[i])
end
return now
