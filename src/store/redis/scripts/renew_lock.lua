-- renew_lock: extend a lock that is still held with the caller's fence.
-- KEYS[1] lock, KEYS[2] session (to follow a rotation alias).
-- ARGV[1] fence, ARGV[2] lease ms (> 0).
-- Reply: {'ok'} | {'lost'} (expired, taken, or the session ended) |
-- {'alias', target hash part}.
if holds(KEYS[1], ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'ok'}
end
local state, target = inspect(KEYS[2], now_ms(), nil)
-- Not held with this fence: the lock (its lease ran out, or it moved with
-- a rotation) and the session may be missing, and the caller may track
-- keys (the client-side cache's connection runs every script; this one
-- is not told): neither may stay in its tracking table (see `untrack`).
untrack(KEYS[1], KEYS[2])
if state == 'alias' then return {'alias', target} end
return {'lost'}
