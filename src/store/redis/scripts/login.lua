-- login: create the user's new session, index it, enforce the per-user limit
-- (evicted sessions lose their locks too) and, when the old session shares
-- the slot (or on a server without Cluster), retire it as moved and drop
-- its lock; atomically.
-- KEYS[1] new session, KEYS[2] index of the new id's (the user's) tag,
-- then, when the old session is retired here: KEYS[3] old session, KEYS[4]
-- the old session's index (its lock is derived).
-- ARGV[1] idle ms, ARGV[2] absolute ms, ARGV[3] user id, ARGV[4] max
-- sessions (0 = unlimited), ARGV[5] 'evict' | 'reject', ARGV[6] moved grace
-- ms, ARGV[7] new hash part, ARGV[8] old hash part ('' when none or in
-- another slot), ARGV[9..] field/value pairs (`@ua`, `@ip`, `d:<key>`).
-- Reply: {'ok', now, expires_at, {evicted hash parts}} | {'rejected'}.
local now = now_ms()
local idle, absolute = tonumber(ARGV[1]), tonumber(ARGV[2])
local user, max, policy = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local grace, new_hash, old_hash = tonumber(ARGV[6]), ARGV[7], ARGV[8]
local idx = KEYS[2]

local skip = nil
if old_hash ~= '' then skip = old_hash end
local others = live_of(idx, user, now, idle, skip)
local evicted = {}
if max > 0 and #others > max - 1 then
  if policy == 'reject' then return {'rejected'} end
  table.sort(others, function(a, b)
    if a[3].seen ~= b[3].seen then return a[3].seen < b[3].seen end
    return a[1] < b[1]
  end)
  for i = 1, #others - (max - 1) do
    redis.call('DEL', others[i][2], others[i][4])
    index_call('ZREM', idx, others[i][1])
    evicted[#evicted + 1] = others[i][1]
  end
end

local deadline = now + absolute
local exp = math.min(now + idle, deadline)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '@user', user, '@created', int(now), '@seen', int(now),
  '@issued', int(now), '@deadline', int(deadline), '@ver', '1')
hset_args(KEYS[1], 9)
put_ttl(KEYS[1], exp - now)
if exp > now then
  index_call('ZADD', idx, int(now), new_hash)
  extend_index(idx, exp)
end

if KEYS[3] then redis.call('DEL', lock_of(KEYS[3])) end
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('DEL', KEYS[3])
  index_call('ZREM', KEYS[4], old_hash)
  if grace > 0 then
    redis.call('HSET', KEYS[3], '@moved', '1')
    redis.call('PEXPIRE', KEYS[3], int(grace))
  end
end
return {'ok', now, exp, evicted}
