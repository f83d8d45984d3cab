-- revoke: end one session (or forget a marker), and its lock.
-- KEYS[1] session, KEYS[2] index of its tag (its lock is derived).
-- ARGV[1] hash part.
-- Reply: 1 if a live session ended, else 0.
local state = inspect(KEYS[1], now_ms(), nil)
redis.call('DEL', lock_of(KEYS[1]))
if state == 'none' then return 0 end
redis.call('DEL', KEYS[1])
index_call('ZREM', KEYS[2], ARGV[1])
if state == 'live' then return 1 end
return 0
