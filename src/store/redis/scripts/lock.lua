-- lock: take a session's lock and read the session, atomically: the holder
-- starts from the latest state in one round trip. Refreshes `@seen` (TTL,
-- index score) when the touch interval has passed, as `load` does.
-- KEYS[1] session (the index of its tag and the lock are derived).
-- ARGV[1] idle ms, ARGV[2] touch interval ms, ARGV[3] hash part, ARGV[4]
-- lease ms (> 0).
-- The fence is `HINCRBY @fence 1` on the session hash (it only grows, and
-- moves with the session on rotation); the lock key holds it, with the
-- lease as its TTL. The session's fields are read last, after the writes,
-- so a caller with a client-side cache (CLIENT TRACKING ... NOLOOP) keeps
-- the key in its tracking table.
-- A failed attempt marks the lock as waited for: the waiters key
-- (`<prefix>:{tag}:w:<hash>`, derived from the lock key, so in its slot;
-- only ever written, never read, so no caller tracks it), with the lease
-- as its TTL; `unlock` publishes a release notice while it exists.
-- Reply: {'ok', now, expires_at, touched, {field, value, ...}, fence} |
-- {'held', lease left ms} | {'none'} | {'moved'} | {'alias', target hash part} |
-- {'corrupt', reason}.
local now = now_ms()
local idle, touch, hash = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local lk = lock_of(KEYS[1])
local idx = index_of(KEYS[1])
-- Every reply but 'ok'. The caller may track keys (the client-side
-- cache's connection runs every script; this one is not told): a missing
-- session key or lock (read by PTTL) must not stay in its tracking
-- table (see `untrack`).
local function miss(reply)
  untrack(KEYS[1], lk)
  return reply
end
local state, m = inspect(KEYS[1], now, idle)
if state == 'none' then return miss({'none'}) end
if state == 'alias' then return miss({'alias', m}) end
if state == 'moved' then return miss({'moved'}) end
if state == 'corrupt' then return miss({'corrupt', 'not a session hash, or invalid metadata'}) end
if state == 'expired' then
  drop_expired(KEYS[1], lk)
  if m.user then index_call('ZREM', idx, hash) end
  return miss({'none'})
end
-- A lock without a TTL, or not a string, would block the session forever
-- (only outside interference makes one): it is dropped.
local ttl = redis.call('PTTL', lk)
if ttl > 0 and redis.call('TYPE', lk)['ok'] == 'string' then
  redis.call('SET', (string.gsub(lk, ':l:([%w_%-]+)$', ':w:%1')), '1', 'PX', ARGV[4])
  return miss({'held', ttl})
end
if ttl ~= -2 then redis.call('DEL', lk) end
local fence = redis.pcall('HINCRBY', KEYS[1], '@fence', 1)
if type(fence) ~= 'number' then return miss({'corrupt', '@fence is not an integer'}) end
redis.call('SET', lk, int(fence), 'PX', ARGV[4])
local exp = m.exp
local touched = 0
if now - m.seen >= touch then
  touched = 1
  local at
  exp, at = refresh(KEYS[1], idx, hash, m.user, now, idle, m.deadline, m.exp_at, touch)
  if at then
    redis.call('HSET', KEYS[1], '@seen', int(now), '@exp', int(at))
  else
    redis.call('HSET', KEYS[1], '@seen', int(now))
  end
end
return {'ok', now, exp, touched, redis.call('HGETALL', KEYS[1]), fence}
