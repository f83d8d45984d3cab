-- retire: after a login whose old session lives in another slot, end the
-- old session (and its lock) and leave a moved marker for the grace period.
-- KEYS[1] old session, KEYS[2] index of its tag (its lock is derived).
-- ARGV[1] moved grace ms, ARGV[2] old hash part.
-- Reply: 1 if something was there, else 0.
local grace = tonumber(ARGV[1])
redis.call('DEL', lock_of(KEYS[1]))
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
index_call('ZREM', KEYS[2], ARGV[2])
if grace > 0 then
  redis.call('HSET', KEYS[1], '@moved', '1')
  redis.call('PEXPIRE', KEYS[1], int(grace))
end
return 1
