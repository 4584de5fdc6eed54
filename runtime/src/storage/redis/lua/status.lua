-- status: a consistent snapshot of a job's values by state.
-- KEYS: the job's keys
-- Returns {} when the job does not exist, else {why it is set aside or '', pending, succeeded,
-- failed, quarantined, missing count, submitted_at, name, priority, why a worker holds it back
-- or '', active value, ...}. A job
-- whose state cannot be read shows no values in any state: what it says cannot be trusted.
local sets, corrupt = load_sets()
if sets == nil then
  return {}
end
local ok, s = pcall(redis.call, 'HMGET', KEYS[K_STATE], 'pending', 'succeeded', 'failed',
  'quarantined', 'submitted_at', 'name', 'priority', 'held_back')
if not ok then
  s = {}
end
local missing = tostring(redis.call('SCARD', KEYS[K_MISSING]))
local priority = decode_count(s[7])
if sets and not (decode_count(s[5]) and priority and priority <= 255) then
  sets, corrupt = false, 'its submission time or priority is malformed'
end
if not sets then
  return { corrupt, '', '', '', '', missing, decode_count(s[5]) and s[5] or '0', s[6] or '',
    '0', '' }
end
local out = { sets.set_aside or '', s[1] or '', s[2] or '', s[3] or '', s[4] or '', missing,
  s[5], s[6] or '', s[7], s[8] or '' }
for _, field in ipairs(redis.call('HKEYS', KEYS[K_ACTIVE])) do
  if decode_count(field) then
    out[#out + 1] = field
  end
end
return out
