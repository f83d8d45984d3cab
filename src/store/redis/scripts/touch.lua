-- touch: the batched idle-expiry refresh of a client-side cache or of the
-- Lua-free read path. A read found the touch due and queued it; this call
-- refreshes `@seen` (and, when due, the TTL and index score: see
-- `refresh`) of a session that is still live, and is a no-op for anything
-- else (gone, expired, a marker).
-- KEYS[1] session (the index of its tag is derived: see `index_of`).
-- ARGV[1] idle ms, ARGV[2] hash part, ARGV[3] '1' from the client cache
-- (a tracking connection), absent from the Lua-free read's batches.
-- Reply: {'ok', now, expires_at, seen, version} | {'gone'}.
local now = now_ms()
local idle, hash = tonumber(ARGV[1]), ARGV[2]
local tracked = ARGV[3] == '1'
local idx = index_of(KEYS[1])
local state, m = inspect(KEYS[1], now, idle)
if state == 'expired' then
  drop_expired(KEYS[1])
  if m.user then index_call('ZREM', idx, hash) end
end
-- On a tracking connection, a missing session key must not stay in its
-- tracking table (see `untrack`).
if state ~= 'live' then
  if tracked then untrack(KEYS[1]) end
  return {'gone'}
end
local exp, at = refresh(KEYS[1], idx, hash, m.user, now, idle, m.deadline, nil, 0)
if at then
  redis.call('HSET', KEYS[1], '@seen', int(now), '@exp', int(at))
else
  redis.call('HSET', KEYS[1], '@seen', int(now))
end
-- A tracking caller (NOLOOP): its own write took the key out of its
-- tracking table, and this read puts it back, so that other clients' writes
-- keep invalidating its copy.
if tracked then redis.call('EXISTS', KEYS[1]) end
return {'ok', now, exp, int(now), m.ver}
