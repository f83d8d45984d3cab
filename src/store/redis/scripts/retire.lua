-- retire: after a login whose old session lives in another slot, take the
-- old session's latest data and end it (and its lock), leaving a moved
-- marker for the grace period. Follows rotation aliases like `login`.
-- Writes that reach the old session before this call are carried over by
-- the caller; those after it find the moved marker and are dropped.
-- KEYS[1] old session, KEYS[2] index of its tag (locks and alias targets
-- are derived).
-- ARGV[1] moved grace ms, ARGV[2] old hash part.
-- Reply: {1, {field, value, ...} of its data, its hash part} if a live
-- session was retired, else {0}.
local grace = tonumber(ARGV[1])
local now = now_ms()
redis.call('DEL', lock_of(KEYS[1]))
local state, key, hash = follow(KEYS[1], ARGV[2], now, nil)
-- The caller may track keys (the client-side cache's connection runs
-- every script; this one is not told), and Redis 7.0 tracked both
-- declared keys at `follow` (see `untrack`): the old session key may be
-- missing, and the index of an anonymous tag always is. Neither may stay
-- in its tracking table.
if state ~= 'live' then
  untrack(KEYS[1], KEYS[2])
  return {0}
end
local all = redis.call('HGETALL', key)
local data = {}
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'd:' then
    data[#data + 1] = all[i]
    data[#data + 1] = all[i + 1]
  end
end
redis.call('DEL', key, lock_of(key))
index_call('ZREM', KEYS[2], hash)
if grace > 0 then
  redis.call('HSET', key, '@moved', '1')
  redis.call('PEXPIRE', key, int(grace))
end
untrack(KEYS[1], KEYS[2])
return {1, data, hash}
