-- rotate: move a live session to a new id of the same tag, keeping data,
-- user, creation, absolute deadline and the fence counter (`@fence`); leave
-- an alias (the lock, holder and remaining lease, moves along: its holder
-- reaches it through the alias) or a moved marker (the lock is dropped:
-- the old token, and a holder that used it, can no longer write).
-- KEYS[1] old session, KEYS[2] new session (the index of the tag and the
-- locks of both are derived).
-- ARGV[1] idle ms, ARGV[2] 'alias' | 'moved', ARGV[3] grace ms,
-- ARGV[4] old hash part, ARGV[5] new hash part.
-- Reply: {'ok', now, expires_at} | {'superseded'} (an alias or a moved
-- marker stands at the old id: another request replaced the token first;
-- nothing changed) | {'gone'}.
local now = now_ms()
local idle, grace = tonumber(ARGV[1]), tonumber(ARGV[3])
local old_lock, new_lock = lock_of(KEYS[1]), lock_of(KEYS[2])
local idx = index_of(KEYS[1])
-- Every reply but 'ok'. The caller may track keys (the client-side
-- cache's connection runs every script; this one is not told): missing
-- session keys must not stay in its tracking table (see
-- `untrack`).
local function miss(reply)
  untrack(KEYS[1], KEYS[2])
  return reply
end
local state, m = inspect(KEYS[1], now, idle)
if state == 'expired' then
  drop_expired(KEYS[1], old_lock)
  if m.user then index_call('ZREM', idx, ARGV[4]) end
  return miss({'gone'})
end
if state == 'alias' or state == 'moved' then return miss({'superseded'}) end
if state ~= 'live' then return miss({'gone'}) end
redis.call('RENAME', KEYS[1], KEYS[2])
-- The lock moves with its TTL: the holder's lease runs on under the new
-- id. COPY (of nothing, when there is no lock) reads nothing, where
-- EXISTS would track a missing lock key on Redis 7.2+ (see `untrack`).
if ARGV[2] == 'alias' then redis.call('COPY', old_lock, new_lock, 'REPLACE') end
redis.call('DEL', old_lock)
if m.user then index_call('ZREM', idx, ARGV[4]) end
-- The new member's score and the key's `@exp` are set afresh.
local exp, at = refresh(KEYS[2], idx, ARGV[5], m.user, now, idle, m.deadline, nil, 0)
-- (A live session's deadline is ahead, so `at` is too: the key stays.)
if at then
  redis.call('HSET', KEYS[2], '@issued', int(now), '@seen', int(now), '@exp', int(at))
  redis.call('HINCRBY', KEYS[2], '@ver', 1)
end
if grace > 0 then
  if ARGV[2] == 'alias' then
    redis.call('HSET', KEYS[1], '@alias', ARGV[5])
  else
    redis.call('HSET', KEYS[1], '@moved', '1')
  end
  redis.call('PEXPIRE', KEYS[1], int(grace))
end
-- Redis 7.0 tracks every declared key at each read-only command (see
-- `untrack`): without a grace period the old key is gone, and for a user
-- PEXPIRETIME tracked it again after the RENAME freed its entry. Every
-- other key exists, or was written after the last read.
if m.user and grace <= 0 then untrack(KEYS[1]) end
return {'ok', now, exp}
