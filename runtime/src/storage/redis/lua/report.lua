-- report: applies the outcomes of finished attempts of one job.
-- KEYS: the job's keys, then KEYS[K_LEASED] the lease index
-- ARGV[1] the wake-up channel, then five per report: value, task id, verdict
-- ('success' | 'error' | 'fatal' | 'requeue' | 'untried'), result or reason, log
-- Returns {done, ack, ack, ...}: done is '1' when every value of the job is finished; each ack is
-- 'applied', 'stale' (that attempt is no longer the current one) or 'gone' (no such job, or
-- one set aside as unreadable).
-- Successes and requeues, the bulk of any job, cost a few multi-field calls per report, whatever
-- their number (a retried value's earlier record is read); a failure updates its own record. A
-- first attempt that succeeded with nothing to say is stored as part of a run (K_RUNS), with no
-- record, result or log of its own.
-- The values go into their sets as runs, so a report costs the same however fragmented the
-- job's sets are.
local count = (#ARGV - 1) / 5

-- Every report of the call answered 'gone'.
local function gone()
  local out = { '0' }
  for _ = 1, count do
    out[#out + 1] = 'gone'
  end
  return out
end

local function main()
  local job = load_job()
  if not job or job.set_aside then
    return gone()
  end
  local fields = {}
  for i = 1, count do
    fields[i] = ARGV[2 + 5 * (i - 1)]
  end
  local leases = hmget(KEYS[K_ACTIVE], fields)
  local now = now_ms()
  local out = { '0' }
  local wake = false
  local ended, logs, results, records = {}, {}, {}, {}
  local ended_here = {}
  local finished = num(now)
  local moves = job.moves
  local clean = new_clean()
  -- Runs once per report of a batch of hundreds: plain indexing, no per-value tables on the
  -- common path (a first attempt that succeeded).
  for i = 1, count do
    local base = 2 + 5 * (i - 1)
    local field, task, verdict, payload, log =
      ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4]
    local lease = leases[i]
    local leased_task, attempt, started, worker, _
    if lease then
      leased_task, attempt, _, started, worker = decode_lease(lease)
    end
    -- The same report twice in one call: the second finds the lease ended.
    if not lease or ended_here[field] or leased_task ~= task then
      out[#out + 1] = 'stale'
    else
      ended_here[field] = true
      ended[#ended + 1] = field
      local value = tonumber(field)
      local quiet = verdict == 'success' and attempt == '1' and payload == '' and log == ''
      if verdict ~= 'requeue' and verdict ~= 'untried' and not quiet then
        logs[#logs + 1] = field
        logs[#logs + 1] = log
      end
      if quiet then
        add_clean(clean, value, task, started, worker)
        moves.succeeded[#moves.succeeded + 1] = value
      elseif verdict == 'success' then
        results[#results + 1] = field
        results[#results + 1] = payload
        records[#records + 1] = field
        if attempt == '1' then
          -- The record, as encode_record writes it: nothing earlier to carry over.
          records[#records + 1] =
            '1 0 0 ' .. started .. ' ' .. finished .. ' ' .. task .. ' ' .. worker
        else
          local record = record_of_attempt(field, lease)
          record.finished_at = finished
          records[#records + 1] = encode_record(record)
        end
        moves.succeeded[#moves.succeeded + 1] = value
      elseif verdict == 'untried' then
        -- As if it had not been claimed: the record stays as the attempt before left it, and
        -- the next claim has this attempt's number again.
        push(moves.pending, value)
        wake = true
      elseif verdict == 'requeue' then
        -- Not a failure, but an attempt all the same: the next one has the next number.
        push(records, field, encode_record(record_of_attempt(field, lease)))
        push(moves.pending, value)
        wake = true
      else
        wake = fail_attempt(job, value, lease, payload, verdict == 'fatal', now) or wake
      end
      out[#out + 1] = 'applied'
    end
  end
  if #ended > 0 then
    call_each('HDEL', KEYS[K_ACTIVE], ended)
    call_each('ZREM', KEYS[K_DEADLINES], ended)
    -- Its last lease ended: nothing for a reaper to look at until the next claim.
    if redis.call('HLEN', KEYS[K_ACTIVE]) == 0 then
      redis.call('ZREM', KEYS[K_LEASED], string.match(KEYS[K_STATE], '{(.-)}'))
    end
  end
  if #logs > 0 then
    call_each('HSET', KEYS[K_LOGS], logs)
  end
  if #results > 0 then
    call_each('HSET', KEYS[K_RESULTS], results)
  end
  save_runs(clean, finished)
  -- A task ran: whatever held the job back on some worker is over.
  if job.held_back and #moves.succeeded > 0 then
    redis.call('HDEL', KEYS[K_STATE], 'held_back')
  end
  if #records > 0 then
    call_each('HSET', KEYS[K_TASKS], records)
  end
  save_moves(job)
  -- A freed concurrency slot lets a waiting worker claim too.
  if wake or job.max_concurrency > 0 then
    redis.call('PUBLISH', ARGV[1], 'report')
  end
  if job_done() then
    out[1] = '1'
  end
  return out
end

return guard(main, gone)
