-- claim: leases up to N pending values of one job, lowest first, within its max concurrency.
-- KEYS: the job's keys
-- ARGV[1] lease time (ms), ARGV[2] the worker (JSON), ARGV[3] the worker's ceilings on the
-- capped limits ('' for none), ARGV[4] '1' when the worker wants the spec with the leases,
-- ARGV[5] the base of the task ids: a fresh ULID whose last three characters are zero, ARGV[6]
-- N, how many values are wanted (at most 32768), ARGV[7] the job id; KEYS[K_LEASED] the lease
-- index (the jobs that may hold leases, by earliest deadline). The k-th lease (from 0) has the
-- base's task id with k in those three characters, in the ULID's base32.
-- Returns {'ok', spec or '', value, task id, attempt, alone ('1' or '0'), deadline, ...},
-- {'corrupt', reason} when the job cannot be read (it is set aside), or one word: 'gone' (no
-- such job), 'above' (it asks more than the ceilings allow), 'waiting'
-- (files missing), 'full' (at max concurrency), 'empty' (nothing pending, some active), 'done'
-- (every value finished).
-- A batch costs the same few Redis calls whatever its size and however fragmented the pending
-- set: the values come off it as at most N intervals, and every per-value write is one
-- multi-field call.
local worker_json = ARGV[2]
local worker = cjson.decode(worker_json).instance

local function main()
  local job = load_job()
  if job == nil then
    return { 'gone' }
  end
  if job.set_aside then
    return { 'corrupt', job.set_aside }
  end
  if ARGV[3] ~= '' then
    local asked = decode_counts(redis.call('HGET', KEYS[K_STATE], 'limits'))
    if not asked then
      corrupt('its limits are not counts', true)
    end
    local i = 1
    for ceiling in string.gmatch(ARGV[3], '%S+') do
      if asked[i] and asked[i] > tonumber(ceiling) then
        return { 'above' }
      end
      i = i + 1
    end
  end
  if redis.call('SCARD', KEYS[K_MISSING]) > 0 then
    return { 'waiting' }
  end
  if redis.call('ZCARD', KEYS[K_PENDING]) == 0 then
    if job_done() then
      return { 'done' }
    end
    return { 'empty' }
  end
  local wanted = tonumber(ARGV[6])
  if job.max_concurrency > 0 then
    local room = job.max_concurrency - redis.call('HLEN', KEYS[K_ACTIVE])
    if room <= 0 then
      return { 'full' }
    end
    wanted = math.min(wanted, room)
  end
  local taken = iv_take_first(KEYS[K_PENDING], wanted)
  local values, fields = {}, {}
  for i = 1, #taken, 2 do
    for value = taken[i], taken[i + 1] do
      values[#values + 1] = value
      fields[#fields + 1] = num(value)
    end
  end
  -- Values with a record have had an attempt end before; the rest are on their first.
  local records = hmget(KEYS[K_TASKS], fields)
  -- A value on its last chance (lost before, and one more loss quarantines it; storage's
  -- on_last_chance) runs alone: if it is what kills workers, it takes no other value down with
  -- it. It goes back to pending unless it comes first, and then it is the whole claim; its
  -- lease says so, and the worker runs it with no other task beside it.
  -- The loops below run once per value of a batch of hundreds: plain indexing, no per-value
  -- tables.
  local claimed, attempts, alone = {}, {}, {}
  -- Values on a later attempt, whose earlier attempt's progress is to be forgotten.
  local retried = {}
  for i = 1, #fields do
    local attempt, last_chance = '1', false
    if records[i] then
      local record = decode_record(records[i])
      if not record then
        -- Back where they were, so that the job, set aside, fails them.
        for j = 1, #taken, 2 do
          iv_insert(KEYS[K_PENDING], taken[j], taken[j + 1])
        end
        corrupt('the task record of value ' .. fields[i] .. ' is malformed', true)
      end
      attempt = num(record.attempts + 1)
      last_chance = record.lost > 0 and record.lost + 1 >= job.max_lost
      retried[#retried + 1] = fields[i]
    end
    if last_chance and #values > 1 then
      if #claimed == 0 then
        claimed, attempts, alone = { fields[i] }, { attempt }, { '1' }
        for j = i + 1, #values do
          push(job.moves.pending, values[j])
        end
        break
      end
      push(job.moves.pending, values[i])
    else
      local n = #claimed + 1
      claimed[n] = fields[i]
      attempts[n] = attempt
      alone[n] = last_chance and '1' or '0'
    end
  end
  save_moves(job)

  local now = num(now_ms())
  local deadline = num(now + tonumber(ARGV[1]))
  redis.call('HSET', KEYS[K_WORKERS], worker, worker_json)
  local active_args, deadline_args = {}, {}
  local out = { 'ok', '' }
  if ARGV[4] == '1' then
    out[2] = redis.call('GET', KEYS[K_SPEC])
  end
  local since = ' ' .. deadline .. ' ' .. now .. ' ' .. worker
  local base = string.sub(ARGV[5], 1, 23)
  -- numbered_task, unrolled: the base with the first two of the three characters set, renewed
  -- every 32 leases.
  local prefix
  for i = 1, #claimed do
    local k = i - 1
    if k % 32 == 0 then
      prefix = base .. BASE32[math.floor(k / 1024) + 1] .. BASE32[math.floor(k / 32) % 32 + 1]
    end
    local field, task, attempt = claimed[i], prefix .. BASE32[k % 32 + 1], attempts[i]
    -- The lease, as encode_lease writes it.
    active_args[2 * i - 1] = field
    active_args[2 * i] = task .. ' ' .. attempt .. since
    deadline_args[2 * i - 1] = deadline
    deadline_args[2 * i] = field
    out[5 * i - 2] = field
    out[5 * i - 1] = task
    out[5 * i] = attempt
    out[5 * i + 1] = alone[i]
    out[5 * i + 2] = deadline
  end
  call_each('HSET', KEYS[K_ACTIVE], active_args)
  call_each('ZADD', KEYS[K_DEADLINES], deadline_args)
  -- In the same step as the leases, so that no lease is ever out of the reaper's sight; never
  -- later than a deadline it already knows.
  redis.call('ZADD', KEYS[K_LEASED], 'LT', deadline, ARGV[7])
  if #retried > 0 then
    call_each('HDEL', KEYS[K_PROGRESS], retried)
  end
  return out
end

return guard(main, function(why)
  return { 'corrupt', why }
end)
