-- workers: the workers that registered recently, and forgets the ones silent for a day.
-- KEYS[1] the workers hash
-- ARGV[1] how recent a registration must be (ms)
-- Returns the live entries, each "<seen ms> <record>".
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local seen = tonumber(string.match(entries[i + 1], '^(%d+) '))
  if not seen or seen < now - 86400000 then
    redis.call('HDEL', KEYS[1], entries[i])
  elseif seen >= now - tonumber(ARGV[1]) then
    live[#live + 1] = entries[i + 1]
  end
end
return live
