-- unlock: release a lock held with the caller's fence; a lock held with
-- another fence (the next holder's) is left alone.
-- KEYS[1] lock, KEYS[2] session (to follow a rotation alias).
-- ARGV[1] fence.
-- Reply: {'ok'} (released, or not ours) | {'alias', target hash part}.
if holds(KEYS[1], ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return {'ok'}
end
local state, target = inspect(KEYS[2], now_ms(), nil)
-- Not held with this fence: the lock (its lease ran out, or it moved with
-- a rotation) and the session may be missing, and the caller may track
-- keys (the client-side cache's connection runs every script; this one
-- is not told): neither may stay in its tracking table (see `untrack`).
untrack(KEYS[1], KEYS[2])
if state == 'alias' then return {'alias', target} end
return {'ok'}
