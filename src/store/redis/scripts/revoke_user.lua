-- revoke_user: end every live session of a user, except one.
-- KEYS[1] index of the user's tag.
-- ARGV[1] user id, ARGV[2] hash part to keep ('' for none).
-- Reply: how many sessions ended.
local live = live_of(KEYS[1], ARGV[1], now_ms(), nil, nil)
local n = 0
for _, s in ipairs(live) do
  if s[1] ~= ARGV[2] then
    redis.call('DEL', s[2])
    redis.call('ZREM', KEYS[1], s[1])
    n = n + 1
  end
end
return n
