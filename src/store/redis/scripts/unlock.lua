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
if state == 'alias' then return {'alias', target} end
return {'ok'}
