-- revoke_user: end every live session of a user (and its lock), except one.
-- KEYS[1] index of the user's tag.
-- ARGV[1] user id, ARGV[2] hash part to keep ('' for none).
-- Reply: the hash parts of the sessions that ended.
local live = live_of(KEYS[1], ARGV[1], now_ms(), nil, nil)
local ended = {}
for _, s in ipairs(live) do
  if s[1] ~= ARGV[2] then
    redis.call('DEL', s[2], s[4])
    index_call('ZREM', KEYS[1], s[1])
    ended[#ended + 1] = s[1]
  end
end
return ended
