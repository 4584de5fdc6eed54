-- report: applies the outcomes of finished attempts of one job.
-- KEYS: the job's keys
-- ARGV[1] the wake-up channel, then five per report: value, task id, verdict
-- ('success' | 'error' | 'fatal' | 'requeue'), result or reason, log
-- Returns {done, ack, ack, ...}: done is '1' when every value of the job is finished; each ack is
-- 'applied', 'stale' (that attempt is no longer the current one) or 'gone' (no such job).
-- Successes and requeues, the bulk of any job, cost a few multi-field calls per report, whatever
-- their number; a failure updates its own task record.
local count = (#ARGV - 1) / 5
if redis.call('EXISTS', KEYS[K_STATE]) == 0 then
  local out = { '0' }
  for i = 1, count do
    out[#out + 1] = 'gone'
  end
  return out
end
local fields = {}
for i = 1, count do
  fields[i] = ARGV[2 + 5 * (i - 1)]
end
local leases = redis.call('HMGET', KEYS[K_ACTIVE], unpack(fields))
local sets = load_sets()
local now = now_ms()
local out = { '0' }
local wake = false
local ended, logs, results, succeeded = {}, {}, {}, {}
for i = 1, count do
  local base = 2 + 5 * (i - 1)
  local field, task, verdict, payload, log =
    ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4]
  local lease = leases[i]
  if not lease or string.match(lease, '^%S+') ~= task then
    out[#out + 1] = 'stale'
  else
    -- The same report twice in one call: the second finds the lease ended.
    for j = i + 1, count do
      if fields[j] == field then
        leases[j] = false
      end
    end
    push(ended, field)
    local value = tonumber(field)
    if verdict ~= 'requeue' then
      push(logs, field, log)
    end
    if verdict == 'success' then
      push(results, field, payload)
      push(succeeded, field)
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
if #ended > 0 then
  redis.call('HDEL', KEYS[K_ACTIVE], unpack(ended))
  redis.call('ZREM', KEYS[K_DEADLINES], unpack(ended))
end
if #logs > 0 then
  redis.call('HSET', KEYS[K_LOGS], unpack(logs))
end
if #results > 0 then
  redis.call('HSET', KEYS[K_RESULTS], unpack(results))
  local records = redis.call('HMGET', KEYS[K_TASKS], unpack(succeeded))
  local task_args = {}
  for i, field in ipairs(succeeded) do
    local record = decode_task_record(records[i])
    record.finished_at = now
    push(task_args, field, cjson.encode(record))
  end
  redis.call('HSET', KEYS[K_TASKS], unpack(task_args))
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
