-- load: read a session, enforce idle and absolute expiry on the Redis clock,
-- and refresh `@seen` (TTL, index score) when the touch interval has passed.
-- KEYS[1] session (the index of its tag is derived: see `index_of`).
-- ARGV[1] idle ms, ARGV[2] touch interval ms, ARGV[3] hash part, ARGV[4]
-- '1' when the caller keeps a client-side cache (CLIENT TRACKING ... NOLOOP):
-- a touch then reads the key again, because this client's own write took
-- the key out of its tracking table.
-- Reply: {'ok', now, expires_at, touched, {field, value, ...}} | {'none'} |
-- {'moved'} | {'alias', target hash part} | {'corrupt', reason}.
local now = now_ms()
local idle, touch, hash = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local tracked = ARGV[4] == '1'
local idx = index_of(KEYS[1])
local miss = miss_for(tracked, KEYS[1])
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
  drop_expired(KEYS[1])
  if m['@user'] then index_call('ZREM', idx, hash) end
  return miss({'none'})
end
local touched = 0
if now - seen >= touch then
  touched = 1
  local at
  exp, at = refresh(KEYS[1], idx, hash, m['@user'], now, idle, deadline, tonumber(m['@exp']), touch)
  if at then
    redis.call('HSET', KEYS[1], '@seen', int(now), '@exp', int(at))
  else
    redis.call('HSET', KEYS[1], '@seen', int(now))
  end
  for i = 1, #all, 2 do
    if all[i] == '@seen' then all[i + 1] = int(now) end
  end
  if tracked then redis.call('EXISTS', KEYS[1]) end
end
return {'ok', now, exp, touched, all}
