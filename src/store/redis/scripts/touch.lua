-- touch: the batched idle-expiry refresh of a client-side cache. A cached
-- read found the touch due and queued it; this call refreshes `@seen`, the
-- TTL and the index score of a session that is still live, and is a no-op
-- for anything else (gone, expired, a marker).
-- KEYS[1] session (the index of its tag is derived: see `index_of`).
-- ARGV[1] idle ms, ARGV[2] hash part.
-- Reply: {'ok', now, expires_at, seen, version} | {'gone'}.
local now = now_ms()
local idle, hash = tonumber(ARGV[1]), ARGV[2]
local idx = index_of(KEYS[1])
local state, m = inspect(KEYS[1], now, idle)
if state == 'expired' then
  redis.call('DEL', KEYS[1])
  if m.user then index_call('ZREM', idx, hash) end
end
-- Only a cache calls this, on a tracking connection: a missing session
-- key must not stay in its tracking table (see `untrack`).
if state ~= 'live' then
  untrack(KEYS[1])
  return {'gone'}
end
local exp = math.min(now + idle, m.deadline)
redis.call('HSET', KEYS[1], '@seen', int(now))
put_ttl(KEYS[1], exp - now)
if m.user then
  index_put(idx, hash, exp)
end
-- The caller tracks keys with NOLOOP: its own write took the key out of its
-- tracking table, and this read puts it back, so that other clients' writes
-- keep invalidating its copy.
redis.call('EXISTS', KEYS[1])
return {'ok', now, exp, int(now), m.ver}
