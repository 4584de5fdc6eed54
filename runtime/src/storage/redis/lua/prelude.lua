-- Shared by every wasmjob script; prepended to each when it is loaded.
--
-- Every per-job script receives the same KEYS, all under the job's hash tag {<job id>}, and
-- finds each at the index named after it: KEYS[K_SPEC] is the spec, and so on. The order is
-- written once, as keys::JOB_KEYS on the Rust side, which generates these indexes ahead of this
-- prelude; a script never counts keys itself.
--   K_SPEC       STRING  the job spec as submitted (JSON)
--   K_STATE      HASH    pending, succeeded, failed, quarantined (interval sets),
--                        max_retries, max_lost, max_concurrency (0 = none), priority,
--                        name, submitted_at, limits (the capped limits the job asks
--                        for, space-separated, in the order of limits::LIMITS)
--   K_MISSING    SET     manifest paths whose bytes are not uploaded yet
--   K_ACTIVE     HASH    value -> its lease: "<task id> <attempt> <deadline ms>
--                        <started ms> <worker instance>"
--   K_DEADLINES  ZSET    value scored by its lease deadline (ms)
--   K_TASKS      HASH    value -> its record once an attempt ended: "<attempts> <failures>
--                        <lost> <started ms> <finished ms> <task id> <worker instance>"
--                        ('-' where there is none)
--   K_RESULTS    HASH    value -> result bytes
--   K_LOGS       HASH    value -> log bytes
--   K_PROGRESS   HASH    value -> latest progress bytes
--   K_ERRORS     HASH    value -> the reason of its last failed attempt
--   K_WORKERS    HASH    worker instance -> the worker (JSON: app, hostname, instance)
-- The scripts that take, end or reap leases (claim, report, reap) get the lease index after the
-- job's own keys, as K_LEASED.
--
-- Leases and records are plain strings, not JSON: a claim or a report of hundreds of values
-- then costs string concatenation per value, and a value's first claim reads nothing.
--
-- Interval sets are strings of space-separated numbers "s1 e1 s2 e2 ..." (inclusive, sorted,
-- disjoint, non-adjacent); in Lua, flat arrays {s1, e1, s2, e2, ...}. Values stay below 2^53,
-- so Lua's doubles hold them exactly; they are always formatted with %.0f, never tostring.

local function num(x)
  return string.format('%.0f', x)
end

-- Lua's unpack stops at about 8,000 values, and a script that fails halfway keeps what it had
-- already written (a claim would drop values from pending without leasing them). Long argument
-- lists go in calls of at most UNPACK_MAX; it is even, so that field-value pairs stay together.
local UNPACK_MAX = 4000

-- Calls `command` on `key` with the items of `args` after it, in as many calls as it takes.
local function call_each(command, key, args)
  for i = 1, #args, UNPACK_MAX do
    redis.call(command, key, unpack(args, i, math.min(i + UNPACK_MAX - 1, #args)))
  end
end

-- HMGET of any number of fields: their values in order, false where there is none.
local function hmget(key, fields)
  local values = {}
  for i = 1, #fields, UNPACK_MAX do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + UNPACK_MAX - 1, #fields)))
    for j = 1, #part do
      values[#values + 1] = part[j]
    end
  end
  return values
end

-- Milliseconds on Redis's clock: every lease is judged on this one clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The largest value Lua's doubles count in steps of one; task values stay at or below it.
local MAX_VALUE = 9007199254740991

-- A non-negative integer at most MAX_VALUE from its decimal digits, or nil. Exponents, signs,
-- fractions and anything else are refused: a loop counting up to such a number would never end.
local function decode_count(text)
  if type(text) ~= 'string' or #text > 16 or not string.match(text, '^%d+$') then
    return nil
  end
  local n = tonumber(text)
  if n > MAX_VALUE then
    return nil
  end
  return n
end

-- An interval set from its text (false, a missing field, is the empty set), or nil and why it
-- is malformed: every bound a count, an even number of them, each interval in order and apart
-- from the one before. The work is one step per bound, whatever the bounds are.
local function decode_set(text)
  local set = {}
  if not text then
    return set
  end
  for token in string.gmatch(text, '%S+') do
    local n = decode_count(token)
    local i = #set + 1
    if not n then
      return nil, 'holds ' .. string.format('%q', string.sub(token, 1, 24)) ..
        ', not a whole number up to 2^53 - 1'
    end
    if i % 2 == 0 and n < set[i - 1] then
      return nil, 'has an interval that ends before it starts'
    end
    if i % 2 == 1 and i > 1 and n <= set[i - 1] + 1 then
      return nil, 'has intervals out of order, overlapping or adjacent'
    end
    set[i] = n
  end
  if #set % 2 == 1 then
    return nil, 'has an interval with no end'
  end
  return set
end

-- The space-separated counts of `text` (false is none), or nil when one is not a count.
local function decode_counts(text)
  local counts = {}
  for token in string.gmatch(text or '', '%S+') do
    counts[#counts + 1] = decode_count(token)
    if not counts[#counts] then
      return nil
    end
  end
  return counts
end

local function encode_set(set)
  local out = {}
  for i = 1, #set do
    out[i] = num(set[i])
  end
  return table.concat(out, ' ')
end

local function set_contains(set, v)
  for i = 1, #set, 2 do
    if v < set[i] then
      return false
    end
    if v <= set[i + 1] then
      return true
    end
  end
  return false
end

local function set_insert(set, v)
  local n = #set
  local i = 1
  while i <= n and set[i + 1] < v - 1 do
    i = i + 2
  end
  if i > n then
    set[n + 1] = v
    set[n + 2] = v
  elseif set[i] <= v and v <= set[i + 1] then
    return
  elseif set[i + 1] == v - 1 then
    set[i + 1] = v
    if i + 2 <= n and set[i + 2] == v + 1 then
      set[i + 1] = set[i + 3]
      table.remove(set, i + 2)
      table.remove(set, i + 2)
    end
  elseif set[i] == v + 1 then
    set[i] = v
  else
    table.insert(set, i, v)
    table.insert(set, i, v)
  end
end

-- Removes and returns up to n of the lowest values.
local function set_take_first(set, n)
  local taken = {}
  while n > 0 and #set > 0 do
    local s, e = set[1], set[2]
    local k = math.min(n, e - s + 1)
    for v = s, s + k - 1 do
      taken[#taken + 1] = v
    end
    n = n - k
    if s + k > e then
      table.remove(set, 1)
      table.remove(set, 1)
    else
      set[1] = s + k
    end
  end
  return taken
end

-- Appends every further argument to the array `list`.
local function push(list, ...)
  for _, item in ipairs({ ... }) do
    list[#list + 1] = item
  end
end

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

-- Counts a failed attempt of `value` (under `lease`); it goes back to pending while retries are
-- left. Returns true when it went back to pending.
local function fail_attempt(sets, value, lease, reason, fatal, now)
  local field = num(value)
  local record = record_of_attempt(field, lease)
  record.failures = record.failures + 1
  local retry = not fatal and record.failures <= sets.max_retries
  if retry then
    set_insert(sets.pending, value)
  else
    record.finished_at = num(now)
    set_insert(sets.failed, value)
  end
  redis.call('HSET', KEYS[K_TASKS], field, encode_record(record))
  redis.call('HSET', KEYS[K_ERRORS], field, reason)
  return retry
end

-- Counts a lost attempt of `value` (its lease expired): back to pending, or quarantined at the
-- job's max lost. Lost attempts do not use up retries. Returns true when it went back to pending.
local function lose_attempt(sets, value, lease, now)
  local field = num(value)
  local record = record_of_attempt(field, lease)
  record.lost = record.lost + 1
  local retry = record.lost < sets.max_lost
  if retry then
    set_insert(sets.pending, value)
  else
    record.finished_at = num(now)
    set_insert(sets.quarantined, value)
  end
  redis.call('HSET', KEYS[K_TASKS], field, encode_record(record))
  redis.call('HSET', KEYS[K_ERRORS], field, 'lease expired: the worker died or stopped reporting')
  return retry
end

-- The job's value sets and policy (with `set_aside`, the reason, once it is set aside, and
-- `held_back`, the note of a worker that cannot run it, while there is one); nil
-- when the job does not exist; false and the reason when its state cannot be read (forged, or
-- written by something else).
local function load_sets()
  local ok, s = pcall(redis.call, 'HMGET', KEYS[K_STATE], 'pending', 'succeeded', 'failed',
    'quarantined', 'max_retries', 'max_lost', 'max_concurrency', 'corrupt', 'held_back')
  if not ok then
    return false, 'its state is not a hash'
  end
  if not s[5] and redis.call('EXISTS', KEYS[K_STATE]) == 0 then
    return nil
  end
  local sets = { set_aside = s[8], held_back = s[9] }
  for i, name in ipairs({ 'pending', 'succeeded', 'failed', 'quarantined' }) do
    local set, why = decode_set(s[i])
    if not set then
      return false, s[8] or ('its ' .. name .. ' set ' .. why)
    end
    sets[name] = set
  end
  for i, name in ipairs({ 'max_retries', 'max_lost', 'max_concurrency' }) do
    sets[name] = decode_count(s[4 + i])
    if not sets[name] then
      return false, s[8] or ('its ' .. name .. ' is not a count')
    end
  end
  return sets
end

-- The union of two interval sets, in one pass over both.
local function set_union(a, b)
  local out, i, j = {}, 1, 1
  while i <= #a or j <= #b do
    local s, e
    if j > #b or (i <= #a and a[i] <= b[j]) then
      s, e = a[i], a[i + 1]
      i = i + 2
    else
      s, e = b[j], b[j + 1]
      j = j + 2
    end
    local n = #out
    if n > 0 and s <= out[n] + 1 then
      out[n] = math.max(out[n], e)
    else
      out[n + 1] = s
      out[n + 2] = e
    end
  end
  return out
end

local function save_sets(sets)
  redis.call('HSET', KEYS[K_STATE], 'pending', encode_set(sets.pending), 'succeeded',
    encode_set(sets.succeeded), 'failed', encode_set(sets.failed), 'quarantined',
    encode_set(sets.quarantined))
end

-- Whether every value of the job is succeeded or failed.
local function job_done(sets)
  return #sets.pending == 0 and redis.call('HLEN', KEYS[K_ACTIVE]) == 0
end

-- Sets the job aside, for good, because of `reason` (a spec no worker can run, or a state no
-- script can read): it is claimed and reaped no more, its leases end (their reports are then
-- stale), and its status says why. Values waiting or running are failed, when the state can be
-- read to tell which they are.
local function set_aside(reason)
  local sets = load_sets()
  if sets then
    for _, field in ipairs(redis.call('HKEYS', KEYS[K_ACTIVE])) do
      local value = decode_count(field)
      if value then
        set_insert(sets.failed, value)
      end
    end
    sets.failed = set_union(sets.failed, sets.pending)
    sets.pending = {}
    save_sets(sets)
  end
  redis.call('DEL', KEYS[K_ACTIVE], KEYS[K_DEADLINES])
  -- A state that is not a hash cannot hold the reason; the job is left out of claims all the
  -- same, by the caller.
  redis.pcall('HSET', KEYS[K_STATE], 'corrupt', reason)
end
