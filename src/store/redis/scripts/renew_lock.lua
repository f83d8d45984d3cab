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
if state == 'alias' then return {'alias', target} end
return {'lost'}
