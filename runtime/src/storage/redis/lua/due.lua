-- due: the jobs whose earliest lease deadline has passed, on Redis's clock: the ones a reaper
-- has to look at. Jobs that only wait, however many, cost it nothing.
-- KEYS[1] the lease index (ZSET of job id by earliest lease deadline, ms)
-- ARGV[1] how many at most
-- Returns the job ids, the longest overdue first.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now), 'LIMIT',
  0, tonumber(ARGV[1]))
