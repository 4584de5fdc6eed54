-- uploaded: records that the bytes of some manifest paths are now stored.
-- KEYS: the job's keys
-- ARGV: the manifest paths whose content was stored
-- Returns how many paths are still missing, or -1 if the job does not exist.
if redis.call('EXISTS', KEYS[K_STATE]) == 0 then
  return -1
end
for i = 1, #ARGV do
  redis.call('SREM', KEYS[K_MISSING], ARGV[i])
end
return redis.call('SCARD', KEYS[K_MISSING])
