-- save: apply a delta (clear, remove, set) to a live session, bump `@ver`,
-- refresh `@seen`. Never creates a session. A fenced delta is applied only
-- if its fence is the session's latest (`@fence`).
-- KEYS[1] session (the index of its tag is derived: see `index_of`).
-- ARGV[1] idle ms, ARGV[2] hash part, ARGV[3] clear ('1' or '0'),
-- ARGV[4] '1' when the caller keeps a client-side cache (CLIENT TRACKING
-- ... NOLOOP): the reply then carries every field, read after the last
-- write, which also puts the key back in this client's tracking table.
-- ARGV[5] the lock fence the delta carries ('' for none),
-- ARGV[6] n = number of data fields to remove, ARGV[7..6+n] those fields,
-- ARGV[7+n..] field/value pairs to set.
-- Reply: {'ok', now, expires_at[, {field, value, ...}]} | {'gone'} |
-- {'moved'} | {'alias', target} | {'fenced'} (nothing written).
local now = now_ms()
local idle, hash = tonumber(ARGV[1]), ARGV[2]
local tracked = ARGV[4] == '1'
local idx = index_of(KEYS[1])
local miss = miss_for(tracked, KEYS[1])
local state, m = inspect(KEYS[1], now, idle)
if state == 'alias' then return miss({'alias', m}) end
if state == 'moved' then return miss({'moved'}) end
if state == 'expired' then
  redis.call('DEL', KEYS[1])
  if m.user then index_call('ZREM', idx, hash) end
  return miss({'gone'})
end
if state ~= 'live' then return miss({'gone'}) end
if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], '@fence') ~= ARGV[5] then
  return miss({'fenced'})
end
if ARGV[3] == '1' then
  local data = {}
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(f, 1, 2) == 'd:' then data[#data + 1] = f end
  end
  hdel_list(KEYS[1], data, 1, #data)
end
local n = tonumber(ARGV[6])
hdel_list(KEYS[1], ARGV, 7, 6 + n)
hset_args(KEYS[1], 7 + n)
redis.call('HINCRBY', KEYS[1], '@ver', 1)
redis.call('HSET', KEYS[1], '@seen', int(now))
local exp = math.min(now + idle, m.deadline)
put_ttl(KEYS[1], exp - now)
if m.user then
  index_call('ZADD', idx, int(now), hash)
  extend_index(idx, exp)
end
if tracked then
  return {'ok', now, exp, redis.call('HGETALL', KEYS[1])}
end
return {'ok', now, exp}
