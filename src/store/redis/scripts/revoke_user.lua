-- revoke_user: end every live session of a user (and its lock), except one.
-- KEYS[1] index of the user's tag.
-- ARGV[1] user id, ARGV[2] hash part to keep ('' for none).
-- Reply: the hash parts of the sessions that ended.
local now = now_ms()
index_prune(KEYS[1], now)
local live = live_of(KEYS[1], ARGV[1], now, nil, nil)
-- No live session: the index may be missing, and a caller that tracks
-- keys must not keep it in its tracking table (see `untrack`). Ended
-- sessions' ZREMs free the entry of an index that had them.
if #live == 0 then untrack(KEYS[1]) end
local ended = {}
for _, s in ipairs(live) do
  if s[1] ~= ARGV[2] then
    redis.call('DEL', s[2], s[4])
    index_call('ZREM', KEYS[1], s[1])
    ended[#ended + 1] = s[1]
  end
end
return ended
