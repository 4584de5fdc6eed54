-- status: a consistent snapshot of a job's values by state.
-- KEYS: the job's keys
-- Returns {} when the job does not exist, else {pending, succeeded, failed, quarantined,
-- missing count, submitted_at, name, priority, active value, active value, ...}.
local s = redis.call('HMGET', KEYS[K_STATE], 'pending', 'succeeded', 'failed', 'quarantined',
  'submitted_at', 'name', 'priority')
if not s[5] then
  return {}
end
local out = { s[1], s[2], s[3], s[4], tostring(redis.call('SCARD', KEYS[K_MISSING])), s[5], s[6],
  s[7] }
for _, field in ipairs(redis.call('HKEYS', KEYS[K_ACTIVE])) do
  out[#out + 1] = field
end
return out
