-- unlock: release a lock held with the caller's fence; a lock held with
-- another fence (the next holder's) is left alone.
-- KEYS[1] lock, KEYS[2] session (to follow a rotation alias).
-- ARGV[1] fence, ARGV[2] release channel, ARGV[3] the caller's origin
-- (the notice is `<origin><hash part>`, so the caller's own subscriber can
-- skip it: the caller wakes its local waiters itself).
-- A release publishes a notice only when a `lock` attempt failed within
-- the lease before: it deletes the waiters key that attempt set (derived
-- like the lock key; `DEL` is a write, so no caller tracks it), and a
-- waiter that is woken and fails again sets it again.
-- Reply: {'ok'} (released, or not ours) | {'alias', target hash part}.
if holds(KEYS[1], ARGV[1]) then
  redis.call('DEL', KEYS[1])
  local hash = string.match(KEYS[1], ':l:([%w_%-]+)$')
  if hash and redis.call('DEL', (string.gsub(KEYS[1], ':l:([%w_%-]+)$', ':w:%1'))) == 1 then
    redis.call('PUBLISH', ARGV[2], ARGV[3] .. hash)
  end
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
