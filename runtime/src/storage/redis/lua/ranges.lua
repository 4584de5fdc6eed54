-- ranges: one page of a job's values in one state.
-- KEYS: the job's keys
-- ARGV[1] the state ('pending', 'succeeded', 'failed', 'quarantined' or 'active'), ARGV[2] the
-- value the page starts at, ARGV[3] how many intervals at most
-- Returns {} when the job does not exist, {'corrupt', why} when its state cannot be read, else
-- {'page', "s1 e1 s2 e2 ..."} (the intervals that end at or after the start), or for 'active'
-- {'active', value, ...}: every active value, as many as the workers hold leases.
local function main()
  local job = load_job()
  if job == nil then
    return {}
  end
  if job.unreadable then
    return { 'corrupt', job.set_aside }
  end
  if ARGV[1] == 'active' then
    local out = { 'active' }
    for _, field in ipairs(active_fields()) do
      out[#out + 1] = field
    end
    return out
  end
  return { 'page', iv_encode(iv_page(KEYS[SETS[ARGV[1]]], tonumber(ARGV[2]), tonumber(ARGV[3]))) }
end

return guard(main, function(why)
  return { 'corrupt', why }
end)
