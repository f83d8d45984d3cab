-- login: create the user's new session from the old session's latest data
-- plus this request's delta, index it, enforce the per-user limit (evicted
-- sessions lose their locks too) and, when the old session shares the slot
-- (or on a server without Cluster), retire it as moved and drop its lock;
-- atomically. The old session is followed through rotation aliases (same
-- tag, so the same slot; the keys are derived); only a live one gives its
-- data, so an ended session's data is never carried into a logged-in one.
-- KEYS[1] new session, KEYS[2] index of the new id's (the user's) tag,
-- then, when the old session is handled here: KEYS[3] old session, KEYS[4]
-- the old session's index.
-- ARGV[1] idle ms, ARGV[2] absolute ms, ARGV[3] user id, ARGV[4] max
-- sessions (0 = unlimited), ARGV[5] 'evict' | 'reject', ARGV[6] moved grace
-- ms, ARGV[7] new hash part, ARGV[8] old hash part ('' when none or in
-- another slot), ARGV[9] clear ('1' or '0'), ARGV[10] n = number of data
-- fields removed, ARGV[11..10+n] those fields (`d:<key>`), ARGV[11+n..]
-- field/value pairs (`@ua`, `@ip`, `d:<key>`).
-- Reply: {'ok', now, expires_at, {evicted hash parts}, {new session's
-- field, value, ...}, retired old hash part or ''} | {'rejected'}.
local now = now_ms()
local idle, absolute = tonumber(ARGV[1]), tonumber(ARGV[2])
local user, max, policy = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local grace, new_hash = tonumber(ARGV[6]), ARGV[7]
local clear, n = ARGV[9] == '1', tonumber(ARGV[10])
local idx = KEYS[2]

local old_key, old_hash = nil, nil
if KEYS[3] then
  local state, key, hash = follow(KEYS[3], ARGV[8], now, idle)
  if state == 'live' then old_key, old_hash = key, hash end
end

-- The per-user limit without walking the index (issue 11): expired members
-- leave by score, ZCARD counts the rest, and only the excess is looked at,
-- soonest-expiring first (for a session below its absolute deadline: the
-- least recently used). With no limit, the index is only pruned by score.
index_prune(idx, now)
local evicted = {}
if max > 0 then
  local count = index_call('ZCARD', idx)
  local in_idx = old_hash and KEYS[4] == idx and redis.call('ZSCORE', idx, old_hash)
  if in_idx then count = count - 1 end
  local base = string.sub(idx, 1, -4)
  -- Members kept at the front (another user's, or the old session, retired
  -- below): the next candidates start after them.
  local pos = 0
  while count > max - 1 do
    local batch = index_call('ZRANGE', idx, pos, pos + (count - (max - 1)) - 1)
    if #batch == 0 then break end
    for _, h in ipairs(batch) do
      if count <= max - 1 then break end
      if h == old_hash then
        pos = pos + 1
      else
        local key, lock = base .. 's:' .. h, base .. 'l:' .. h
        local state, m = inspect(key, now, idle)
        if state == 'live' and m.user == user then
          if policy == 'reject' then
            untrack(unpack(KEYS))
            return {'rejected'}
          end
          redis.call('DEL', key, lock)
          index_call('ZREM', idx, h)
          evicted[#evicted + 1] = h
        elseif state == 'live' then
          -- Another user who shares the tag: left alone, and not counted.
          pos = pos + 1
        else
          if state == 'expired' and m.user == user then drop_expired(key, lock) end
          index_call('ZREM', idx, h)
          -- Redis 7.2+ tracked the missing key `inspect` read.
          if state == 'none' then untrack(key) end
        end
        count = count - 1
      end
    end
  end
end

local deadline = now + absolute
local exp = math.min(now + idle, deadline)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '@user', user, '@created', int(now), '@seen', int(now),
  '@issued', int(now), '@deadline', int(deadline), '@ver', '1')
if old_key and not clear then
  local removed = {}
  for i = 11, 10 + n do removed[ARGV[i]] = true end
  copy_data(redis.call('HGETALL', old_key), KEYS[1], removed)
end
hset_args(KEYS[1], 11 + n)
local _, at = refresh(KEYS[1], idx, new_hash, user, now, idle, deadline, nil, 0)
if at then redis.call('HSET', KEYS[1], '@exp', int(at)) end

if KEYS[3] then redis.call('DEL', lock_of(KEYS[3])) end
if old_key then
  redis.call('DEL', old_key, lock_of(old_key))
  index_call('ZREM', KEYS[4], old_hash)
  if grace > 0 then
    redis.call('HSET', old_key, '@moved', '1')
    redis.call('PEXPIRE', old_key, int(grace))
  end
end
local all = redis.call('HGETALL', KEYS[1])
-- The caller may track keys (the client-side cache's connection runs
-- every script; this one is not told), and Redis 7.0 tracks every
-- declared key at each read-only command, HGETALL included (see
-- `untrack`): the old session key may be missing (a stale cookie, or no
-- grace period), the old index too (an anonymous tag has none). None of
-- them may stay in its tracking table; keys that exist are left alone.
untrack(unpack(KEYS))
return {'ok', now, exp, evicted, all, old_hash or ''}
