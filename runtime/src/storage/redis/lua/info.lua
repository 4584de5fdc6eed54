-- info: everything known about one value, read at one instant.
-- KEYS: the job's keys
-- ARGV[1] the value
-- Returns {} when the job does not exist, else {state, record or false, lease or false,
-- result or false, log or false, progress or false, last error or false, worker JSON or false};
-- state is 'active', 'succeeded', 'failed', 'quarantined' or 'pending' (the caller checks that
-- the value is in the job's range); {'corrupt', why} when the job's state cannot be read.
local function main()
  local job = load_job()
  if job == nil then
    return {}
  end
  if job.unreadable then
    return { 'corrupt', job.set_aside }
  end
  local field = ARGV[1]
  local value = tonumber(field)
  local lease = redis.call('HGET', KEYS[K_ACTIVE], field)
  local state = 'pending'
  if lease then
    state = 'active'
  else
    for _, name in ipairs({ 'succeeded', 'failed', 'quarantined' }) do
      if iv_contains(KEYS[SETS[name]], value) then
        state = name
        break
      end
    end
  end
  local record = redis.call('HGET', KEYS[K_TASKS], field)
  local result = redis.call('HGET', KEYS[K_RESULTS], field)
  local log = redis.call('HGET', KEYS[K_LOGS], field)
  if not record and state == 'succeeded' then
    -- It said nothing: its record is its run's, and its result and log are empty.
    record = run_record(value)
    result, log = '', ''
  end
  -- The worker of the current attempt, or else of the last one.
  local worker = false
  if lease then
    worker = select(5, decode_lease(lease)) or false
  elseif record then
    worker = (decode_record(record) or {}).worker or false
  end
  if worker then
    worker = redis.call('HGET', KEYS[K_WORKERS], worker)
  end
  return {
    state,
    record,
    lease,
    result,
    log,
    redis.call('HGET', KEYS[K_PROGRESS], field),
    redis.call('HGET', KEYS[K_ERRORS], field),
    worker,
  }
end

return guard(main, function(why)
  return { 'corrupt', why }
end)
