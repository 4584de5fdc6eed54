-- abandon: removes a job whose files never all arrived by its upload deadline (its submitter
-- died or gave up), as delete does, and counts it.
-- KEYS: the job's keys
-- ARGV: none
-- Returns {spec, missing path, ...} when the job was removed; {} when it is gone already or all
-- its files arrived after all.
if redis.call('SCARD', KEYS[K_MISSING]) == 0 then
  return {}
end
local out = { redis.call('GET', KEYS[K_SPEC]) or '' }
for _, path in ipairs(redis.call('SMEMBERS', KEYS[K_MISSING])) do
  out[#out + 1] = path
end
redis.call('DEL', unpack(KEYS))
return out
