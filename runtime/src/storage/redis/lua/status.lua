-- status: a consistent snapshot of a job's values by state: how many in each, and the first
-- page of each state's intervals.
-- KEYS: the job's keys
-- ARGV[1] how many intervals of each state at most
-- Returns {} when the job does not exist, else {why it is set aside or '', pending count,
-- succeeded count, failed count, quarantined count, missing count, submitted_at, name,
-- priority, why a worker holds it back or '', pending page, succeeded page, failed page,
-- quarantined page, active value, ...}; a page is its bounds, "s1 e1 s2 e2 ...". A job whose
-- state cannot be read shows no values in any state: what it says cannot be trusted.
local limit = tonumber(ARGV[1])

local function unreadable(why)
  local ok, s = pcall(redis.call, 'HMGET', KEYS[K_STATE], 'submitted_at', 'name')
  if not ok then
    s = {}
  end
  return { why, '0', '0', '0', '0', tostring(redis.call('SCARD', KEYS[K_MISSING])),
    decode_count(s[1]) and s[1] or '0', s[2] or '', '0', '', '', '', '', '' }
end

local function main()
  local job = load_job()
  if job == nil then
    return {}
  end
  if job.unreadable then
    return unreadable(job.set_aside)
  end
  local s = redis.call('HMGET', KEYS[K_STATE], 'submitted_at', 'name', 'priority')
  local priority = decode_count(s[3])
  if not (decode_count(s[1]) and priority and priority <= 255) then
    corrupt('its submission time or priority is malformed', true)
  end
  local counts = count_values()
  local out = { job.set_aside or '', num(counts.pending), num(counts.succeeded),
    num(counts.failed), num(counts.quarantined), tostring(redis.call('SCARD', KEYS[K_MISSING])),
    s[1], s[2] or '', s[3], job.held_back or '' }
  for _, key in ipairs({ K_PENDING, K_SUCCEEDED, K_FAILED, K_QUARANTINED }) do
    out[#out + 1] = iv_encode(iv_page(KEYS[key], 0, limit))
  end
  for _, field in ipairs(active_fields()) do
    out[#out + 1] = field
  end
  return out
end

return guard(main, unreadable)
