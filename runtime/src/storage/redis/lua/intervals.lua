-- Interval sets kept in Redis sorted sets, so that a fragmented set stays fast.
--
-- A set is one sorted set whose members are its intervals, "start end" (inclusive, decimal),
-- each scored by its start; the intervals are disjoint and non-adjacent, as in the Rust
-- RangeSet. Every operation finds what it touches with a ranged ZRANGE (logarithmic in the
-- number of intervals) and rewrites only the intervals it merges or cuts. A set kept as one
-- string, the first layout, was decoded and re-encoded whole on every change, which made a
-- fragmented job quadratic: measured in one script call on this machine, an insert cost 26 us
-- into a set of 10 intervals, 2.5 ms into 10^3, 16 ms into 10^4 and 241 ms into 10^5, where
-- the sorted set costs 9 to 16 us at every size. A chunked bitmap would make one value's change
-- cheaper still, but its cost follows the values, not the intervals: a 10^7-value job that
-- succeeds whole is one member here and 1.25 MB of bits there. A sorted set costs a few
-- commands per change where a short string costs one, so the changes of a batch are made as
-- runs of values (iv_insert_all), not one value at a time.
--
-- Counts of values are the caller's: every change returns how many values it added or removed.
-- Bounds go to Redis as strings made by `num`, since Lua would print a large double with an
-- exponent. A member that is not an interval, or intervals read out of order, stop the script
-- with `corrupt` (the prelude's): a forged set is set aside, not trusted. Needs the prelude.

local function iv_member(s, e)
  return num(s) .. ' ' .. num(e)
end

-- The name of the set at `key`, as messages give it: "pending" for the job's pending set.
local function iv_name(key)
  return string.match(key, ':(%w+)$') or key
end

-- The bounds of a member of the set at `key`; it stops the script (`corrupt`) for one that is
-- not two counts in order.
local function iv_bounds(key, member)
  local s, e = string.match(member, '^(%S+) (%S+)$')
  if not s then
    corrupt('its ' .. iv_name(key) .. ' set holds ' .. string.format('%q', string.sub(member, 1, 40)) ..
      ', not an interval')
  end
  local start, finish = decode_count(s), decode_count(e)
  if not (start and finish) then
    corrupt('its ' .. iv_name(key) .. ' set holds ' .. string.format('%q', string.sub(member, 1, 40)) ..
      ', not a whole number up to 2^53 - 1')
  end
  if finish < start then
    corrupt('its ' .. iv_name(key) .. ' set has an interval that ends before it starts')
  end
  return start, finish
end

-- Checks that an interval read after another (whose end is `previous`, nil for none) starts
-- after it, apart from it.
local function iv_after(key, previous, s)
  if previous and s <= previous + 1 then
    corrupt('its ' .. iv_name(key) .. ' set has intervals out of order, overlapping or adjacent')
  end
end

-- Removes the members `gone` from the set at `key`, then adds the intervals `kept` (a flat list
-- of bounds).
local function iv_rewrite(key, gone, kept)
  call_each('ZREM', key, gone)
  local args = {}
  for i = 1, #kept, 2 do
    args[i] = num(kept[i])
    args[i + 1] = iv_member(kept[i], kept[i + 1])
  end
  call_each('ZADD', key, args)
end

-- The interval that starts last before `v` (strictly, when `strict`), as member and bounds.
local function iv_before(key, v, strict)
  local bound = num(v)
  if strict then
    bound = '(' .. bound
  end
  local member = redis.call('ZRANGE', key, bound, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1)[1]
  if member then
    return member, iv_bounds(key, member)
  end
end

-- Whether `v` is in the set at `key`.
local function iv_contains(key, v)
  local member, _, e = iv_before(key, v, false)
  return member ~= nil and e >= v
end

-- Adds the values `s..=e` (s <= e) to the set at `key`; returns how many were not there.
-- Intervals it merges with are removed, so the work is paid for by the inserts that made them.
local function iv_insert(key, s, e)
  local added = e - s + 1
  local gone = {}
  local first, last = s, e
  local member, ps, pe = iv_before(key, s, true)
  if member then
    if pe >= e then
      return 0
    end
    if pe + 1 >= s then
      if pe >= s then
        added = added - (pe - s + 1)
      end
      gone[#gone + 1] = member
      first = ps
    end
  end
  local previous = member and pe
  for _, next_member in ipairs(redis.call('ZRANGE', key, num(s), num(e + 1), 'BYSCORE')) do
    local ns, ne = iv_bounds(key, next_member)
    iv_after(key, previous, ns)
    previous = ne
    if ns <= e then
      added = added - (math.min(ne, e) - ns + 1)
    end
    last = math.max(last, ne)
    gone[#gone + 1] = next_member
  end
  iv_rewrite(key, gone, { first, last })
  return added
end

-- Removes the values `s..=e` (s <= e) from the set at `key`; returns how many were there.
local function iv_remove(key, s, e)
  local removed = 0
  local gone, kept = {}, {}
  local function cut(member, ms, me)
    gone[#gone + 1] = member
    -- The count first: a running sum plus a bound near 2^53 would round.
    removed = removed + (math.min(me, e) - math.max(ms, s) + 1)
    if ms < s then
      kept[#kept + 1] = ms
      kept[#kept + 1] = s - 1
    end
    if me > e then
      kept[#kept + 1] = e + 1
      kept[#kept + 1] = me
    end
  end
  local member, ps, pe = iv_before(key, s, true)
  if member and pe >= s then
    cut(member, ps, pe)
  end
  for _, next_member in ipairs(redis.call('ZRANGE', key, num(s), num(e), 'BYSCORE')) do
    cut(next_member, iv_bounds(key, next_member))
  end
  iv_rewrite(key, gone, kept)
  return removed
end

-- Removes up to `n` (n >= 1) of the lowest values of the set at `key` and returns them as a
-- flat list of bounds {s1, e1, s2, e2, ...}: at most n intervals are read.
local function iv_take_first(key, n)
  local taken, gone, kept = {}, {}, {}
  local previous
  for _, member in ipairs(redis.call('ZRANGE', key, 0, n - 1)) do
    if n == 0 then
      break
    end
    local s, e = iv_bounds(key, member)
    iv_after(key, previous, s)
    previous = e
    local k = math.min(n, e - s + 1)
    taken[#taken + 1] = s
    taken[#taken + 1] = s + k - 1
    gone[#gone + 1] = member
    n = n - k
    if s + k <= e then
      kept = { s + k, e }
    end
  end
  iv_rewrite(key, gone, kept)
  return taken
end

-- Up to `limit` intervals of the set at `key` that end at or after `from`, ascending, as a flat
-- list of bounds: a page of a long set.
local function iv_page(key, from, limit)
  local out = {}
  local member, s, e = iv_before(key, from, true)
  if member and e >= from then
    out[1], out[2] = s, e
    limit = limit - 1
  end
  if limit > 0 then
    local members = redis.call('ZRANGE', key, num(from), '+inf', 'BYSCORE', 'LIMIT', 0, limit)
    for _, next_member in ipairs(members) do
      local ns, ne = iv_bounds(key, next_member)
      iv_after(key, out[#out], ns)
      out[#out + 1] = ns
      out[#out + 1] = ne
    end
  end
  return out
end

-- Adds `values` (a list of values, in any order; it is sorted) to the set at `key`, a run of
-- consecutive values at a time; returns how many were not there.
local function iv_insert_all(key, values)
  table.sort(values)
  local added, i = 0, 1
  while i <= #values do
    local j = i
    while j < #values and values[j + 1] <= values[j] + 1 do
      j = j + 1
    end
    added = added + iv_insert(key, values[i], values[j])
    i = j + 1
  end
  return added
end

-- A flat list of bounds as the replies carry it: "s1 e1 s2 e2 ...".
local function iv_encode(bounds)
  local out = {}
  for i = 1, #bounds do
    out[i] = num(bounds[i])
  end
  return table.concat(out, ' ')
end
