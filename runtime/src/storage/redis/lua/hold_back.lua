-- hold_back: records why a worker cannot run a job's tasks for now, shown by status until a
-- task of the job succeeds (see report).
-- KEYS: the job's keys
-- ARGV[1] the note
-- Returns 1, or 0 when the job does not exist (a note must not make a state for a deleted job).
if redis.call('EXISTS', KEYS[K_STATE]) == 0 then
  return 0
end
redis.call('HSET', KEYS[K_STATE], 'held_back', ARGV[1])
return 1
