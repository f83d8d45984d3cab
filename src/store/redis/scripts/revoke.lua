-- revoke: end one session (or forget a marker), and its lock.
-- KEYS[1] session, KEYS[2] index of its tag (its lock is derived).
-- ARGV[1] hash part.
-- Reply: 1 if a live session ended, else 0.
local state, m = inspect(KEYS[1], now_ms(), nil)
redis.call('DEL', lock_of(KEYS[1]))
-- The caller may track keys (the client-side cache's connection runs
-- every script; this one is not told), and Redis 7.0 tracked both
-- declared keys at `inspect` (see `untrack`): a missing session key, or
-- the index of a session that is not a user's (none exists), must not
-- stay in its tracking table. The ZREM of a user's member frees the
-- index's entry.
if state == 'none' then
  untrack(KEYS[1], KEYS[2])
  return 0
end
redis.call('DEL', KEYS[1])
index_call('ZREM', KEYS[2], ARGV[1])
if not (type(m) == 'table' and m.user) then untrack(KEYS[2]) end
if state == 'live' then return 1 end
return 0
