-- register: announces a worker and the ceilings it accepts, stamped with Redis's clock.
-- KEYS[1] the workers hash
-- ARGV[1] the worker's instance id, ARGV[2] its record (JSON: worker, ceilings)
-- Stores "<now ms> <record>" under the instance id and returns now.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', now) .. ' ' .. ARGV[2])
return now
