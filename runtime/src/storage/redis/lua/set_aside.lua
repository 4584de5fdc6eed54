-- set_aside: sets a job aside for good, when a worker finds its spec unreadable or one no worker
-- can run (see set_aside in job.lua).
-- KEYS: the job's keys
-- ARGV[1] the reason
-- Returns 1, or 0 when the job does not exist.
if redis.call('EXISTS', KEYS[K_STATE]) == 0 then
  return 0
end
set_aside(ARGV[1], false)
return 1
