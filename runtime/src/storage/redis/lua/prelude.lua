-- Shared by every wasmjob script; prepended to each when it is loaded. The per-job scripts have
-- intervals.lua (interval sets in sorted sets) and job.lua (a job's records, leases and
-- attempts) after it.
--
-- Every per-job script receives the same KEYS, all under the job's hash tag {<job id>}, and
-- finds each at the index named after it: KEYS[K_SPEC] is the spec, and so on. The order is
-- written once, as keys::JOB_KEYS on the Rust side, which generates these indexes ahead of this
-- prelude; a script never counts keys itself.
--   K_SPEC        STRING  the job spec as submitted (JSON)
--   K_STATE       HASH    max_retries, max_lost, max_concurrency (0 = none), priority, name,
--                         submitted_at, limits (the capped limits the job asks for,
--                         space-separated, in the order of limits::LIMITS); n_values (how
--                         many values the job has), n_succeeded, n_failed, n_quarantined
--                         (how many are in each of those sets; the rest are pending or active);
--                         corrupt (why it was set aside), unreadable ('1' when that was its
--                         state), held_back (why a worker cannot run it for now)
--   K_PENDING     ZSET    the values waiting to be claimed, an interval set (intervals.lua)
--   K_SUCCEEDED   ZSET    the values done with a result, an interval set
--   K_FAILED      ZSET    the values done without one, an interval set
--   K_QUARANTINED ZSET    the values whose attempts were lost max_lost times, an interval set
--   K_MISSING     SET     manifest paths whose bytes are not uploaded yet
--   K_ACTIVE      HASH    value -> its lease: "<task id> <attempt> <deadline ms>
--                         <started ms> <worker instance>"
--   K_DEADLINES   ZSET    value scored by its lease deadline (ms)
--   K_TASKS       HASH    value -> its record once an attempt ended: "<attempts> <failures>
--                         <lost> <started ms> <finished ms> <task id> <worker instance>"
--                         ('-' where there is none)
--   K_RUNS        ZSET    runs of values that succeeded on their first attempt with an empty
--                         result and log, and have no record of their own: "<first value>
--                         <last value> <task id of the first> <started ms> <finished ms>
--                         <worker instance>", scored by the first value; the task ids of a
--                         run follow each other as the claim gave them (job.lua's run_record)
--   K_RESULTS     HASH    value -> result bytes
--   K_LOGS        HASH    value -> log bytes
--   K_PROGRESS    HASH    value -> latest progress bytes
--   K_ERRORS      HASH    value -> the reason of its last failed attempt
--   K_WORKERS     HASH    worker instance -> the worker (JSON: app, hostname, instance)
-- The scripts that take, end or reap leases (claim, report, reap) get the lease index after the
-- job's own keys, as K_LEASED.
--
-- Leases and records are plain strings, not JSON: a claim or a report of hundreds of values
-- then costs string concatenation per value, and a value's first claim reads nothing.
--
-- Values stay below 2^53, so Lua's doubles hold them exactly; they are always formatted with
-- %.0f (num), never tostring.

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

-- Appends every further argument to the array `list`.
local function push(list, ...)
  for _, item in ipairs({ ... }) do
    list[#list + 1] = item
  end
end

-- Stops the script because stored state cannot be read (`why` says what): job.lua's guard sets
-- the job aside and answers as the script does for such a job. `sets_readable` when what cannot
-- be read is not the job's sets, which then still tell what failed. Raised as a table, so that
-- it is told apart from every other error, which is passed on.
local function corrupt(why, sets_readable)
  error({ corrupt = why, sets_readable = sets_readable })
end
