-- rotate: move a live session to a new id of the same tag, keeping data,
-- user, creation, absolute deadline and the fence counter (`@fence`); leave
-- an alias (the lock, holder and remaining lease, moves along: its holder
-- reaches it through the alias) or a moved marker (the lock is dropped:
-- the old token, and a holder that used it, can no longer write).
-- KEYS[1] old session, KEYS[2] new session, KEYS[3] index of the tag (the
-- locks of both are derived).
-- ARGV[1] idle ms, ARGV[2] 'alias' | 'moved', ARGV[3] grace ms,
-- ARGV[4] old hash part, ARGV[5] new hash part.
-- Reply: {'ok', now, expires_at} | {'superseded'} (an alias or a moved
-- marker stands at the old id: another request replaced the token first;
-- nothing changed) | {'gone'}.
local now = now_ms()
local idle, grace = tonumber(ARGV[1]), tonumber(ARGV[3])
local old_lock, new_lock = lock_of(KEYS[1]), lock_of(KEYS[2])
local state, m = inspect(KEYS[1], now, idle)
if state == 'expired' then
  redis.call('DEL', KEYS[1], old_lock)
  if m.user then index_call('ZREM', KEYS[3], ARGV[4]) end
  return {'gone'}
end
if state == 'alias' or state == 'moved' then return {'superseded'} end
if state ~= 'live' then return {'gone'} end
local exp = math.min(now + idle, m.deadline)
redis.call('RENAME', KEYS[1], KEYS[2])
-- RENAME keeps the TTL: the holder's lease runs on under the new id.
if ARGV[2] == 'alias' and redis.call('EXISTS', old_lock) == 1 then
  redis.call('RENAME', old_lock, new_lock)
else
  redis.call('DEL', old_lock)
end
redis.call('HSET', KEYS[2], '@issued', int(now), '@seen', int(now))
redis.call('HINCRBY', KEYS[2], '@ver', 1)
put_ttl(KEYS[2], exp - now)
if m.user then
  index_call('ZREM', KEYS[3], ARGV[4])
  index_call('ZADD', KEYS[3], int(now), ARGV[5])
  extend_index(KEYS[3], exp)
end
if grace > 0 then
  if ARGV[2] == 'alias' then
    redis.call('HSET', KEYS[1], '@alias', ARGV[5])
  else
    redis.call('HSET', KEYS[1], '@moved', '1')
  end
  redis.call('PEXPIRE', KEYS[1], int(grace))
end
return {'ok', now, exp}
