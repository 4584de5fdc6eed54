-- claim: leases up to N pending values of one job, lowest first, within its max concurrency.
-- KEYS: the job's keys
-- ARGV[1] lease time (ms), ARGV[2] the worker (JSON), ARGV[3..] one fresh task id per value
-- wanted (so N = #ARGV - 2)
-- Returns {'ok', value, task id, attempt, deadline, ...} or one word: 'gone' (no such job),
-- 'waiting' (files missing), 'full' (at max concurrency), 'empty' (nothing pending, some
-- active), 'done' (every value finished).
if redis.call('EXISTS', KEYS[K_STATE]) == 0 then
  return { 'gone' }
end
if redis.call('SCARD', KEYS[K_MISSING]) > 0 then
  return { 'waiting' }
end
local sets = load_sets()
if #sets.pending == 0 then
  if job_done(sets) then
    return { 'done' }
  end
  return { 'empty' }
end
local wanted = #ARGV - 2
if sets.max_concurrency > 0 then
  local room = sets.max_concurrency - redis.call('HLEN', KEYS[K_ACTIVE])
  if room <= 0 then
    return { 'full' }
  end
  wanted = math.min(wanted, room)
end
local values = set_take_first(sets.pending, wanted)
redis.call('HSET', KEYS[K_STATE], 'pending', encode_set(sets.pending))

local now = now_ms()
local deadline = now + tonumber(ARGV[1])
local worker = cjson.decode(ARGV[2])
local out = { 'ok' }
for i, value in ipairs(values) do
  local field = num(value)
  local task = ARGV[2 + i]
  local record = task_record(field)
  record.attempts = record.attempts + 1
  record.worker = worker
  record.task_id = task
  record.started_at = now
  save_task_record(field, record)
  redis.call('HSET', KEYS[K_ACTIVE], field, task .. ' ' .. record.attempts .. ' ' .. num(deadline))
  redis.call('ZADD', KEYS[K_DEADLINES], deadline, field)
  redis.call('HDEL', KEYS[K_PROGRESS], field)
  out[#out + 1] = field
  out[#out + 1] = task
  out[#out + 1] = tostring(record.attempts)
  out[#out + 1] = num(deadline)
end
return out
