-- create: store a new anonymous session.
-- KEYS[1] session.
-- ARGV[1] idle ms, ARGV[2] absolute ms, ARGV[3..] field/value pairs
-- (`@ua`, `@ip`, `d:<key>`).
-- Reply: {now, expires_at}.
local now = now_ms()
local idle, absolute = tonumber(ARGV[1]), tonumber(ARGV[2])
local deadline = now + absolute
local exp = math.min(now + idle, deadline)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '@created', int(now), '@seen', int(now),
  '@issued', int(now), '@deadline', int(deadline), '@ver', '1')
hset_args(KEYS[1], 3)
local _, at = refresh(KEYS[1], nil, nil, nil, now, idle, deadline, nil, 0)
if at then redis.call('HSET', KEYS[1], '@exp', int(at)) end
return {now, exp}
