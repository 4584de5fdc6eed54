-- claim: leases up to N pending values of one job, lowest first, within its max concurrency.
-- KEYS: the job's keys
-- ARGV[1] lease time (ms), ARGV[2] the worker (JSON), ARGV[3..] one fresh task id per value
-- wanted (so N = #ARGV - 2)
-- Returns {'ok', value, task id, attempt, deadline, ...} or one word: 'gone' (no such job),
-- 'waiting' (files missing), 'full' (at max concurrency), 'empty' (nothing pending, some
-- active), 'done' (every value finished).
-- A batch costs the same few Redis calls whatever its size: every per-value write is one
-- multi-field call.
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
local fields = {}
for i, value in ipairs(values) do
  fields[i] = num(value)
end
local records = redis.call('HMGET', KEYS[K_TASKS], unpack(fields))
-- A value whose attempt was lost before (its worker died) runs alone: if it is what kills
-- workers, it takes no other value down with it. It goes back to pending unless it comes first,
-- and then it is the whole claim.
local claimed, claimed_records = {}, {}
for i, field in ipairs(fields) do
  local record = decode_task_record(records[i])
  if (record.lost or 0) > 0 and #values > 1 then
    if #claimed == 0 then
      claimed, claimed_records = { field }, { record }
      for j = i + 1, #values do
        set_insert(sets.pending, values[j])
      end
      break
    end
    set_insert(sets.pending, values[i])
  else
    push(claimed, field)
    push(claimed_records, record)
  end
end
redis.call('HSET', KEYS[K_STATE], 'pending', encode_set(sets.pending))

local now = now_ms()
local deadline = num(now + tonumber(ARGV[1]))
local worker = cjson.decode(ARGV[2])
local task_args, active_args, deadline_args = {}, {}, {}
local out = { 'ok' }
for i, field in ipairs(claimed) do
  local record = claimed_records[i]
  local task = ARGV[2 + i]
  record.attempts = record.attempts + 1
  record.worker = worker
  record.task_id = task
  record.started_at = now
  local attempts = tostring(record.attempts)
  push(task_args, field, cjson.encode(record))
  push(active_args, field, task .. ' ' .. attempts .. ' ' .. deadline)
  push(deadline_args, deadline, field)
  push(out, field, task, attempts, deadline)
end
redis.call('HSET', KEYS[K_TASKS], unpack(task_args))
redis.call('HSET', KEYS[K_ACTIVE], unpack(active_args))
redis.call('ZADD', KEYS[K_DEADLINES], unpack(deadline_args))
redis.call('HDEL', KEYS[K_PROGRESS], unpack(claimed))
return out
