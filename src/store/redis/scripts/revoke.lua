-- revoke: end one session (or forget a marker), and its lock.
-- KEYS[1] session (the index of its tag and its lock are derived).
-- ARGV[1] hash part.
-- Reply: 1 if a live session ended, else 0.
local idx = index_of(KEYS[1])
local state = inspect(KEYS[1], now_ms(), nil)
redis.call('DEL', lock_of(KEYS[1]))
-- The caller may track keys (the client-side cache's connection runs
-- every script; this one is not told): a missing session key read by
-- `inspect` must not stay in its tracking table (see `untrack`).
if state == 'none' then
  untrack(KEYS[1])
  return 0
end
redis.call('DEL', KEYS[1])
index_call('ZREM', idx, ARGV[1])
if state == 'live' then return 1 end
return 0
