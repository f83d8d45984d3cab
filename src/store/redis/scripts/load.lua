-- load: read a session, enforce idle and absolute expiry on the Redis clock,
-- and refresh `@seen` (TTL, index score) when the touch interval has passed.
-- KEYS[1] session, KEYS[2] index of its tag.
-- ARGV[1] idle ms, ARGV[2] touch interval ms, ARGV[3] hash part, ARGV[4]
-- '1' when the caller keeps a client-side cache (CLIENT TRACKING ... NOLOOP):
-- a touch then reads the key again, because this client's own write took
-- the key out of its tracking table.
-- Reply: {'ok', now, expires_at, touched, {field, value, ...}} | {'none'} |
-- {'moved'} | {'alias', target hash part} | {'corrupt', reason}.
local now = now_ms()
local idle, touch, hash = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local tracked = ARGV[4] == '1'
-- Every reply but a live session's. The caller tracks keys: the session
-- key may be missing (a random or stale cookie) and the index of its tag
-- too (always, for an anonymous tag), and neither may stay in its
-- tracking table (see `untrack`). Never on the path of a live session.
local function miss(reply)
  if tracked then untrack(KEYS[1], KEYS[2]) end
  return reply
end
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return miss({'none'}) end
if t ~= 'hash' then return miss({'corrupt', 'the key holds a ' .. t .. ', not a hash'}) end
local all = redis.call('HGETALL', KEYS[1])
local m = {}
for i = 1, #all, 2 do
  if string.byte(all[i], 1) == 64 then m[all[i]] = all[i + 1] end
end
if m['@alias'] then return miss({'alias', m['@alias']}) end
if m['@moved'] then return miss({'moved'}) end
local seen, deadline = tonumber(m['@seen']), tonumber(m['@deadline'])
if not (seen and deadline and tonumber(m['@created']) and tonumber(m['@issued'])
    and tonumber(m['@ver'])) then
  return miss({'corrupt', 'missing or invalid metadata'})
end
local exp = math.min(seen + idle, deadline)
if now >= exp then
  redis.call('DEL', KEYS[1])
  if m['@user'] then index_call('ZREM', KEYS[2], hash) end
  return miss({'none'})
end
local touched = 0
if now - seen >= touch then
  touched = 1
  exp = math.min(now + idle, deadline)
  redis.call('HSET', KEYS[1], '@seen', int(now))
  put_ttl(KEYS[1], exp - now)
  if m['@user'] then
    index_call('ZADD', KEYS[2], int(now), hash)
    extend_index(KEYS[2], exp)
  end
  for i = 1, #all, 2 do
    if all[i] == '@seen' then all[i + 1] = int(now) end
  end
  if tracked then redis.call('EXISTS', KEYS[1]) end
end
-- An anonymous session's tag has no index, but Redis 7.0 tracks the
-- declared KEYS[2] anyway: one entry per anonymous session, for good.
-- Stopgap until the index is derived here instead of declared (then 7.0
-- never tracks it and this goes); a logged-in session's index exists.
if tracked and not m['@user'] then untrack(KEYS[2]) end
return {'ok', now, exp, touched, all}
