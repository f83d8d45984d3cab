-- sessions_of: list a user's live sessions, pruning the index.
-- KEYS[1] index of the user's tag. ARGV[1] user id, ARGV[2] idle ms.
-- Reply: {{hash part, created, seen, issued, deadline, ver, ua|nil, ip|nil,
-- expires_at}, ...}.
local now = now_ms()
index_prune(KEYS[1], now)
local live = live_of(KEYS[1], ARGV[1], now, tonumber(ARGV[2]), nil)
-- No live session: the index may be missing, and a caller that tracks
-- keys must not keep it in its tracking table (see `untrack`).
if #live == 0 then untrack(KEYS[1]) end
local out = {}
for _, s in ipairs(live) do
  local m = s[3]
  out[#out + 1] = {s[1], m.created, int(m.seen), m.issued, int(m.deadline), m.ver,
    m.ua or false, m.ip or false, int(m.exp)}
end
return out
