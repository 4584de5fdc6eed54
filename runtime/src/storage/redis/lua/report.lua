-- report: applies the outcomes of finished attempts of one job.
-- KEYS: the job's keys
-- ARGV[1] the wake-up channel, then five per report: value, task id, verdict
-- ('success' | 'error' | 'fatal' | 'requeue'), result or reason, log
-- Returns {done, ack, ack, ...}: done is '1' when every value of the job is finished; each ack is
-- 'applied', 'stale' (that attempt is no longer the current one) or 'gone' (no such job).
local count = (#ARGV - 1) / 5
if redis.call('EXISTS', KEYS[K_STATE]) == 0 then
  local out = { '0' }
  for i = 1, count do
    out[#out + 1] = 'gone'
  end
  return out
end
local sets = load_sets()
local now = now_ms()
local out = { '0' }
local wake = false
for i = 0, count - 1 do
  local field, task, verdict, payload, log =
    ARGV[2 + 5 * i], ARGV[3 + 5 * i], ARGV[4 + 5 * i], ARGV[5 + 5 * i], ARGV[6 + 5 * i]
  local lease = redis.call('HGET', KEYS[K_ACTIVE], field)
  if not lease or string.match(lease, '^%S+') ~= task then
    out[#out + 1] = 'stale'
  else
    end_lease(field)
    local value = tonumber(field)
    if verdict ~= 'requeue' then
      redis.call('HSET', KEYS[K_LOGS], field, log)
    end
    if verdict == 'success' then
      redis.call('HSET', KEYS[K_RESULTS], field, payload)
      local record = task_record(field)
      record.finished_at = now
      save_task_record(field, record)
      set_insert(sets.succeeded, value)
    elseif verdict == 'requeue' then
      set_insert(sets.pending, value)
      wake = true
    else
      wake = fail_attempt(sets, value, payload, verdict == 'fatal', now) or wake
    end
    out[#out + 1] = 'applied'
  end
end
save_sets(sets)
-- A freed concurrency slot lets a waiting worker claim too.
if wake or sets.max_concurrency > 0 then
  redis.call('PUBLISH', ARGV[1], 'report')
end
if job_done(sets) then
  out[1] = '1'
end
return out
