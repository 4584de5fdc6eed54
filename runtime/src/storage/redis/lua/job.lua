-- A job as the per-job scripts see it: its task records and leases, how an attempt ends, the
-- values a script moves between the job's sets and their counts, and setting a job aside. Read
-- after prelude.lua and intervals.lua.

-- A task record from its text, a fresh one when there is none (an HMGET's false), or nil when
-- the text is malformed.
local function decode_record(text)
  if not text then
    return { attempts = 0, failures = 0, lost = 0, started_at = '-', finished_at = '-',
      task_id = '-', worker = '-' }
  end
  local attempts, failures, lost, started, finished, task, worker =
    string.match(text, '^(%d+) (%d+) (%d+) (%S+) (%S+) (%S+) (%S+)$')
  if not attempts then
    return nil
  end
  return { attempts = tonumber(attempts), failures = tonumber(failures), lost = tonumber(lost),
    started_at = started, finished_at = finished, task_id = task, worker = worker }
end

local function encode_record(record)
  return table.concat({ num(record.attempts), num(record.failures), num(record.lost),
    record.started_at, record.finished_at, record.task_id, record.worker }, ' ')
end

-- The lease of an attempt, as stored in KEYS[K_ACTIVE].
local function encode_lease(task, attempt, deadline, started, worker)
  return table.concat({ task, attempt, deadline, started, worker }, ' ')
end

-- The parts of a lease: task id, attempt, deadline, started, worker instance; nothing when the
-- lease is malformed.
local function decode_lease(lease)
  return string.match(lease, '^(%S+) (%d+) (%d+) (%d+) (%S+)$')
end

-- The record of `field` as its attempt under `lease` ends: the earlier record (a first attempt
-- has none to read) brought up to this attempt.
local function record_of_attempt(field, lease)
  local task, attempt, _, started, worker = decode_lease(lease)
  local record
  if attempt and tonumber(attempt) > 1 then
    record = decode_record(redis.call('HGET', KEYS[K_TASKS], field))
  end
  -- A malformed earlier record is not worth failing the attempt's report over.
  record = record or decode_record(false)
  record.attempts = tonumber(attempt) or record.attempts + 1
  record.task_id = task or '-'
  record.started_at = started or '-'
  record.worker = worker or '-'
  return record
end

-- Ends the lease of `field`: it is no longer active.
local function end_lease(field)
  redis.call('HDEL', KEYS[K_ACTIVE], field)
  redis.call('ZREM', KEYS[K_DEADLINES], field)
end

-- The ULID alphabet (Crockford's base32). A claim numbers its leases in the last three
-- characters of one fresh ULID: the k-th (from 0) is the base's first 23 characters and k.
local BASE32 = { '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'A', 'B', 'C', 'D', 'E', 'F',
  'G', 'H', 'J', 'K', 'M', 'N', 'P', 'Q', 'R', 'S', 'T', 'V', 'W', 'X', 'Y', 'Z' }
local BASE32_DIGITS = table.concat(BASE32)

-- The task id numbered `k` (below 32768) under the 23 characters `prefix`.
local function numbered_task(prefix, k)
  return prefix .. BASE32[math.floor(k / 1024) + 1] .. BASE32[math.floor(k / 32) % 32 + 1] ..
    BASE32[k % 32 + 1]
end

-- The prefix and number of a task id as numbered_task makes them; nil for what is not one.
local function task_number(task)
  if #task ~= 26 then
    return nil
  end
  local k = 0
  for i = 24, 26 do
    local digit = string.find(BASE32_DIGITS, string.sub(task, i, i), 1, true)
    if not digit then
      return nil
    end
    k = k * 32 + digit - 1
  end
  return string.sub(task, 1, 23), k
end

-- Values that succeeded on their first attempt with nothing to say (an empty result and log),
-- gathered by a report: they get no record, result or log of their own, only a place in a run
-- (K_RUNS), which is what keeps a finished no-op job's memory in its intervals and runs.
local function new_clean()
  return { values = {}, tasks = {}, started = {}, workers = {} }
end

local function add_clean(clean, value, task, started, worker)
  local n = #clean.values + 1
  clean.values[n], clean.tasks[n], clean.started[n], clean.workers[n] = value, task, started,
    worker
end

-- Writes the gathered values as runs: consecutive values whose task ids follow each other, of
-- one claim (same start and worker), each run one member of K_RUNS.
local function save_runs(clean, finished)
  local values, tasks, started, workers = clean.values, clean.tasks, clean.started, clean.workers
  local n = #values
  local order = {}
  for i = 1, n do
    order[i] = i
  end
  table.sort(order, function(a, b)
    return values[a] < values[b]
  end)
  local members = {}
  local i = 1
  while i <= n do
    local a = order[i]
    local prefix, k = task_number(tasks[a])
    local j = i
    while prefix and j < n do
      local b, c = order[j], order[j + 1]
      local next_prefix, next_k = task_number(tasks[c])
      if not (values[c] == values[b] + 1 and next_prefix == prefix and next_k == k + j + 1 - i
          and started[c] == started[a] and workers[c] == workers[a]) then
        break
      end
      j = j + 1
    end
    push(members, num(values[a]), table.concat({ num(values[a]), num(values[order[j]]), tasks[a],
      started[a], finished, workers[a] }, ' '))
    i = j + 1
  end
  call_each('ZADD', KEYS[K_RUNS], members)
end

-- The record of `value` from the run that holds it, as encode_record writes records; nil when
-- no run holds it.
local function run_record(value)
  local member = redis.call('ZRANGE', KEYS[K_RUNS], num(value), '-inf', 'BYSCORE', 'REV',
    'LIMIT', 0, 1)[1]
  if not member then
    return nil
  end
  local s, e, task, started, finished, worker =
    string.match(member, '^(%d+) (%d+) (%S+) (%S+) (%S+) (%S+)$')
  if not s or value > tonumber(e) then
    return nil
  end
  local prefix, k = task_number(task)
  if prefix then
    task = numbered_task(prefix, k + value - tonumber(s))
  end
  return table.concat({ '1 0 0', started, finished, task, worker }, ' ')
end

-- The job's sets by name, as indexes into KEYS.
local SETS = { pending = K_PENDING, succeeded = K_SUCCEEDED, failed = K_FAILED,
  quarantined = K_QUARANTINED }

-- Counts a failed attempt of `value` (under `lease`); it goes back to pending while retries are
-- left. Returns true when it went back to pending.
local function fail_attempt(job, value, lease, reason, fatal, now)
  local field = num(value)
  local record = record_of_attempt(field, lease)
  record.failures = record.failures + 1
  local retry = not fatal and record.failures <= job.max_retries
  if retry then
    push(job.moves.pending, value)
  else
    record.finished_at = num(now)
    push(job.moves.failed, value)
  end
  redis.call('HSET', KEYS[K_TASKS], field, encode_record(record))
  redis.call('HSET', KEYS[K_ERRORS], field, reason)
  return retry
end

-- Counts a lost attempt of `value` (its lease expired): back to pending, or quarantined at the
-- job's max lost. Lost attempts do not use up retries. Returns true when it went back to pending.
local function lose_attempt(job, value, lease, now)
  local field = num(value)
  local record = record_of_attempt(field, lease)
  record.lost = record.lost + 1
  local retry = record.lost < job.max_lost
  if retry then
    push(job.moves.pending, value)
  else
    record.finished_at = num(now)
    push(job.moves.quarantined, value)
  end
  redis.call('HSET', KEYS[K_TASKS], field, encode_record(record))
  redis.call('HSET', KEYS[K_ERRORS], field, 'lease expired: the worker died or stopped reporting')
  return retry
end

-- The job's policy, and the lists of values the script moves into each set (`moves`, written
-- by save_moves), with `set_aside`, the reason, once it is set aside (and `unreadable` when that
-- was because its state cannot be read: it then shows no values), and `held_back`, the note of
-- a worker that cannot run it, while there is one; nil when the job does not exist. Its
-- state stops the script (`corrupt`) when it cannot be read (forged, or written by something
-- else).
local function load_job()
  local ok, s = pcall(redis.call, 'HMGET', KEYS[K_STATE], 'max_retries', 'max_lost',
    'max_concurrency', 'corrupt', 'held_back', 'unreadable')
  if not ok then
    corrupt('its state is not a hash')
  end
  if not s[1] and redis.call('EXISTS', KEYS[K_STATE]) == 0 then
    return nil
  end
  local job = { set_aside = s[4], held_back = s[5], unreadable = s[6] == '1',
    moves = { pending = {}, succeeded = {}, failed = {}, quarantined = {} } }
  if job.set_aside then
    return job
  end
  for i, name in ipairs({ 'max_retries', 'max_lost', 'max_concurrency' }) do
    job[name] = decode_count(s[i])
    if not job[name] then
      corrupt('its ' .. name .. ' is not a count', true)
    end
  end
  return job
end

-- The job's active values, as fields: as many as its workers hold leases (each claims at most
-- 32768 at a time).
local function active_fields()
  local fields = {}
  for _, field in ipairs(redis.call('HKEYS', KEYS[K_ACTIVE])) do
    if decode_count(field) then
      fields[#fields + 1] = field
    end
  end
  return fields
end

-- Writes the values moved by the script into their sets, as runs, and counts those that
-- reached an end.
local function save_moves(job)
  for _, name in ipairs({ 'pending', 'succeeded', 'failed', 'quarantined' }) do
    local values = job.moves[name]
    if #values > 0 then
      local added = iv_insert_all(KEYS[SETS[name]], values)
      if name ~= 'pending' then
        redis.call('HINCRBY', KEYS[K_STATE], 'n_' .. name, added)
      end
    end
  end
end

-- How many values the job has in each state, from the counts it keeps: pending is what no
-- other state holds.
local function count_values()
  local n = redis.call('HMGET', KEYS[K_STATE], 'n_values', 'n_succeeded', 'n_failed',
    'n_quarantined')
  local counts = { active = redis.call('HLEN', KEYS[K_ACTIVE]) }
  for i, name in ipairs({ 'values', 'succeeded', 'failed', 'quarantined' }) do
    counts[name] = tonumber(n[i]) or 0
  end
  counts.pending = math.max(0, counts.values - counts.succeeded - counts.failed -
    counts.quarantined - counts.active)
  return counts
end

-- Whether every value of the job is succeeded, failed or quarantined.
local function job_done()
  return redis.call('ZCARD', KEYS[K_PENDING]) == 0 and redis.call('HLEN', KEYS[K_ACTIVE]) == 0
end

-- Moves every value waiting or running into the failed set, and counts them.
local function fail_the_rest()
  local counts = count_values()
  local running = {}
  for _, field in ipairs(redis.call('HKEYS', KEYS[K_ACTIVE])) do
    running[#running + 1] = decode_count(field)
  end
  if redis.call('ZCARD', KEYS[K_FAILED]) == 0 then
    -- The usual case, a job set aside before anything failed: the set moves whole.
    if redis.call('EXISTS', KEYS[K_PENDING]) == 1 then
      redis.call('RENAME', KEYS[K_PENDING], KEYS[K_FAILED])
    end
  else
    for _, member in ipairs(redis.call('ZRANGE', KEYS[K_PENDING], 0, -1)) do
      iv_insert(KEYS[K_FAILED], iv_bounds(KEYS[K_PENDING], member))
    end
  end
  iv_insert_all(KEYS[K_FAILED], running)
  redis.call('HINCRBY', KEYS[K_STATE], 'n_failed', counts.pending + #running)
end

-- Sets the job aside, for good, because of `reason` (a spec no worker can run, or, when
-- `unreadable`, a state no script can read): it is claimed and reaped no more, its leases end
-- (their reports are then stale), and its status says why. Values waiting or running are
-- failed, when the state can be read to tell which they are; an unreadable job shows no values.
local function set_aside(reason, unreadable)
  if not unreadable and not pcall(fail_the_rest) then
    unreadable = true
  end
  redis.call('DEL', KEYS[K_ACTIVE], KEYS[K_DEADLINES])
  if unreadable then
    redis.call('UNLINK', KEYS[K_PENDING])
  end
  -- A state that is not a hash cannot hold the reason; the job is left out of claims all the
  -- same, by the caller.
  redis.pcall('HSET', KEYS[K_STATE], 'corrupt', reason, 'unreadable', unreadable and '1' or '0')
end

-- Runs `main`, the script's body, and returns its reply; when it stops on stored state it cannot
-- read (`corrupt`), the job is set aside and the reply is `on_corrupt(why)`, the script's answer
-- for such a job. Any other error is passed on.
local function guard(main, on_corrupt)
  local ok, reply = pcall(main)
  if ok then
    return reply
  end
  if type(reply) == 'table' and reply.corrupt then
    set_aside(reply.corrupt, not reply.sets_readable)
    return on_corrupt(reply.corrupt)
  end
  error(reply, 0)
end
