-- expire: claims a session whose expiry shadow ran out (expiry events on),
-- for its `expired` event. Every instance's subscriber runs it on the
-- same notice; the DEL makes one of them the claimant.
-- KEYS[1] session (its index and lock are derived).
-- ARGV[1] hash part.
-- Reply: {'expired', user or '', 'idle' | 'absolute', {HGETALL}} |
-- {'none'} (gone, a marker, or live again).
local now = now_ms()
local state, m = inspect(KEYS[1], now, nil)
if state == 'live' then
  -- Still live by `@exp` (only a shadow written with another TTL, by an
  -- instance with another grace, gets here): watch it again.
  if m.exp_at then redis.call('SET', shadow_of(KEYS[1]), '', 'PXAT', int(m.exp_at)) end
  return {'none'}
end
if state ~= 'expired' then return {'none'} end
local all = redis.call('HGETALL', KEYS[1])
local reason = 'idle'
-- `@exp` is the earlier deadline plus at most one touch interval, capped
-- at the absolute one: reaching it means the absolute deadline came first.
if m.exp_at and m.exp_at >= m.deadline then reason = 'absolute' end
redis.call('DEL', KEYS[1], lock_of(KEYS[1]))
if m.user then index_call('ZREM', index_of(KEYS[1]), ARGV[1]) end
return {'expired', m.user or '', reason, all}
