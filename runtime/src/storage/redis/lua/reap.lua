-- reap: returns the values of expired leases to pending (a lost attempt counted, not a failure),
-- or quarantines them at the job's max lost. Any worker may run it; a lease is reaped once.
-- KEYS: the job's keys, then KEYS[K_LEASED] the lease index
-- ARGV[1] the wake-up channel, ARGV[2] the job id
-- Returns {requeued, quarantined, done}; done is 1 when every value of the job is finished.
-- The job's place in the lease index moves to its earliest deadline left, or it leaves the
-- index when it holds no lease: a claim puts it back, in the same step as the lease.
local function reindex()
  local first = redis.call('ZRANGE', KEYS[K_DEADLINES], 0, 0, 'WITHSCORES')
  if #first == 0 then
    redis.call('ZREM', KEYS[K_LEASED], ARGV[2])
  else
    redis.call('ZADD', KEYS[K_LEASED], first[2], ARGV[2])
  end
end

local function main()
  if redis.call('EXISTS', KEYS[K_STATE]) == 0 then
    redis.call('ZREM', KEYS[K_LEASED], ARGV[2])
    return { 0, 0, 0 }
  end
  local now = now_ms()
  local expired = redis.call('ZRANGEBYSCORE', KEYS[K_DEADLINES], '-inf', '(' .. num(now))
  local requeued, quarantined = 0, 0
  if #expired == 0 then
    reindex()
    return { 0, 0, 0 }
  end
  local job = load_job()
  if not job or job.set_aside then
    -- Set aside already: its leases ended with it.
    redis.call('DEL', KEYS[K_ACTIVE], KEYS[K_DEADLINES])
    reindex()
    return { 0, 0, 1 }
  end
  for _, field in ipairs(expired) do
    local lease = redis.call('HGET', KEYS[K_ACTIVE], field)
    local value = decode_count(field)
    end_lease(field)
    if not value then
      -- Not a value at all: there is no attempt to count.
      lease = false
    end
    if lease and lose_attempt(job, value, lease, now) then
      requeued = requeued + 1
    elseif lease then
      quarantined = quarantined + 1
    end
  end
  save_moves(job)
  reindex()
  if requeued > 0 then
    redis.call('PUBLISH', ARGV[1], 'reap')
  end
  if job_done() then
    return { requeued, quarantined, 1 }
  end
  return { requeued, quarantined, 0 }
end

return guard(main, function()
  reindex()
  return { 0, 0, 1 }
end)
