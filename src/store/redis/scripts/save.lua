-- save: apply a delta (clear, remove, set) to a live session, bump `@ver`,
-- refresh `@seen`. Never creates a session. A fenced delta is applied only
-- if its fence is the session's latest (`@fence`).
-- Kept light (issue 11): one HMGET reads all it decides on, one HSET writes
-- the values with `@seen` and `@ver`, and the TTL and index score move only
-- when `@exp` no longer covers the new deadline (see `refresh`): three
-- `redis.call`s for most writes.
-- KEYS[1] session (the index of its tag is derived: see `index_of`).
-- ARGV[1] idle ms, ARGV[2] hash part, ARGV[3] clear ('1' or '0'),
-- ARGV[4] '1' when the caller keeps a client-side cache (CLIENT TRACKING
-- ... NOLOOP): the reply then carries every field, read after the last
-- write, which also puts the key back in this client's tracking table.
-- ARGV[5] the lock fence the delta carries ('' for none), ARGV[6] touch
-- interval ms (the slack of `@exp`: see `refresh`),
-- ARGV[7] n = number of data fields to remove, ARGV[8..7+n] those fields,
-- ARGV[8+n..] field/value pairs to set.
-- Reply: {'ok', now, expires_at[, {field, value, ...}]} | {'gone'} |
-- {'moved'} | {'alias', target} | {'fenced'} (nothing written).
local now = now_ms()
local idle, hash = tonumber(ARGV[1]), ARGV[2]
local tracked = ARGV[4] == '1'
local idx = index_of(KEYS[1])
local miss = miss_for(tracked, KEYS[1])
-- A key of another type (only outside interference makes one) is no
-- session: pcall turns WRONGTYPE into 'gone'.
local f = redis.pcall('HMGET', KEYS[1], '@alias', '@moved', '@user', '@seen', '@deadline',
  '@fence', '@ver', '@exp')
if f.err then return miss({'gone'}) end
if f[1] then return miss({'alias', f[1]}) end
if f[2] then return miss({'moved'}) end
local user, seen, deadline, ver = f[3], tonumber(f[4]), tonumber(f[5]), tonumber(f[7])
-- A corrupt `@ver` (not a number) would fail the write half-way.
if not (seen and deadline and ver) then return miss({'gone'}) end
if now >= math.min(seen + idle, deadline) then
  drop_expired(KEYS[1])
  if user then index_call('ZREM', idx, hash) end
  return miss({'gone'})
end
if ARGV[5] ~= '' and f[6] ~= ARGV[5] then return miss({'fenced'}) end
if ARGV[3] == '1' then
  local data = {}
  for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(field, 1, 2) == 'd:' then data[#data + 1] = field end
  end
  hdel_list(KEYS[1], data, 1, #data)
end
local n = tonumber(ARGV[7])
hdel_list(KEYS[1], ARGV, 8, 7 + n)
local exp, at = refresh(KEYS[1], idx, hash, user, now, idle, deadline, tonumber(f[8]), tonumber(ARGV[6]))
if at then
  hset_args(KEYS[1], 8 + n, '@seen', int(now), '@ver', int(ver + 1), '@exp', int(at))
else
  hset_args(KEYS[1], 8 + n, '@seen', int(now), '@ver', int(ver + 1))
end
if tracked then
  return {'ok', now, exp, redis.call('HGETALL', KEYS[1])}
end
return {'ok', now, exp}
