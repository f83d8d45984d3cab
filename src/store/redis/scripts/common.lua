-- Helpers shared by every sessionkit script. Rust prepends `#!lua` (so Redis
-- Cluster refuses any key outside the slot of the declared keys) and this
-- file to each script body.
--
-- Session hash fields: `d:<key>` = JSON of one data value; `@user`,
-- `@created`, `@seen`, `@issued`, `@deadline` (ms on the Redis clock),
-- `@ver`, `@ua` (with `@ua1`..`@ua3`: pieces of at most 64 bytes), `@ip`, and `@fence` (the latest lock fence issued; only
-- grows). Markers: `@alias` = new hash part, `@moved` = 1. A session's lock
-- is a string key of its own (same `{tag}`) holding the holder's fence,
-- with the lease as its TTL.
-- Times are integers below 2^53, so Lua numbers hold them exactly; they are
-- written with `int` because Lua's default number format would round them.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function int(n)
  return string.format('%d', n)
end

-- Drops the calling client's tracking entries for those of `...` (keys)
-- that do not exist (issue 10). With the client-side cache, scripts run on
-- a connection with CLIENT TRACKING ON, and Redis remembers keys for it:
-- Redis 7.0 every key the script DECLARES, as soon as the script runs any
-- read-only command (TYPE, HGETALL, PTTL, ZRANGE, PEXPIRETIME...), even a
-- key it never reads (measured on 7.0.15); Redis 7.2+ the keys its
-- read-only commands read. Missing keys included. An entry only goes when
-- its key is modified (NOLOOP spares us the push, not the removal) or the
-- client disconnects, so every random cookie would leave its session key
-- and the index of its random tag in the table for good. Creating a
-- missing key (SET NX, with PX 1 in case) and deleting it again frees the
-- entry; a key that exists is left alone (its entry is legitimate and
-- goes when the key changes or expires). Must run after the script's last
-- read-only command: on 7.0 any later read tracks every declared key
-- again. Keys are declared ones or derived from them (same `{tag}`, same
-- slot: Cluster-safe). Under maxmemory: these scripts have no
-- `allow-oom` flag, so Redis refuses them outright when over the limit,
-- and a SET inside one that started below it is allowed; no new failure.
local function untrack(...)
  local made = {}
  for _, key in ipairs({...}) do
    if redis.call('SET', key, '', 'PX', 1, 'NX') then made[#made + 1] = key end
  end
  if #made > 0 then redis.call('DEL', unpack(made)) end
end

-- The reply-maker of load and save for every reply but a live session's:
-- with a caller that tracks keys (`tracked`, their ARGV flag), the session
-- key may be missing (a random or stale cookie) and its entry is freed
-- first. Never on the path of a live session.
local function miss_for(tracked, key)
  return function(reply)
    if tracked then untrack(key) end
    return reply
  end
end

-- Runs a sorted-set command on an index. An index key of another type
-- (only outside interference makes one) would fail every script of its
-- users; it only lists sessions, so it is dropped and rebuilt as they are
-- used. The normal path costs no extra command.
local function index_call(cmd, idx, ...)
  local r = redis.pcall(cmd, idx, ...)
  if type(r) == 'table' and r.err then
    if redis.call('TYPE', idx).ok ~= 'zset' then
      redis.call('DEL', idx)
    end
    return redis.call(cmd, idx, ...)
  end
  return r
end

-- The lock key of a session key (`<p>:{<tag>}:s:<hash>` ->
-- `<p>:{<tag>}:l:<hash>`, same slot). Derived rather than declared: a
-- declared key is tracked by the client cache's connection even if it never
-- exists, and such a tracking entry is never freed.
local function lock_of(session_key)
  return (string.gsub(session_key, ':s:([%w_%-]+)$', ':l:%1'))
end

-- The index of a session key's tag (`<prefix>:{tag}:idx`, same slot).
-- Derived, not declared: Redis 7.0 tracks every declared key of a script
-- for a caller with CLIENT TRACKING on (see `untrack`), and an anonymous
-- session's tag never has an index, so a declared one would leave an
-- entry per anonymous session that nothing ever frees.
local function index_of(session_key)
  return (string.gsub(session_key, ':s:[%w_%-]+$', ':idx'))
end

-- The expiry shadow of a session key (expiry events on): an empty string
-- whose TTL is the session's `@exp`. Redis reports its expiry while the
-- session hash, whose TTL runs `EXPIRY_GRACE` longer, still holds the data.
local function shadow_of(session_key)
  return (string.gsub(session_key, ':s:([%w_%-]+)$', ':x:%1'))
end

-- The session key of hash part `hash` beside `session_key` (same prefix
-- and `{tag}`, so the same slot): where a rotation alias leads. Derived,
-- not declared, for the reason `lock_of` gives.
local function sibling(session_key, hash)
  return (string.gsub(session_key, ':s:[%w_%-]+$', ':s:' .. hash))
end

-- Keeps an index alive at least until `at` (ms), the expiry of a member.
local function extend_index(idx, at)
  local cur = redis.call('PEXPIRETIME', idx)
  if cur == -1 or (cur >= 0 and cur < at) then
    redis.call('PEXPIREAT', idx, int(at))
  end
end

-- Index members are scored by their session's expiry (ms on the Redis
-- clock), so that everything expired leaves an index in one
-- ZREMRANGEBYSCORE and what remains counts the live sessions (issue 11:
-- login never walks the index). Every write that moves a session's expiry
-- moves its score with it: a score below the real expiry would let
-- `index_prune` drop a live session from its user's list.
local function index_put(idx, hash, exp)
  index_call('ZADD', idx, int(exp), hash)
  extend_index(idx, exp)
end

-- Drops the members whose session has expired by its score; O(log n + the
-- members dropped). Their keys went with their TTL.
local function index_prune(idx, now)
  index_call('ZREMRANGEBYSCORE', idx, '-inf', int(now))
end

-- Moves a session's expiry for activity at `now` and returns it
-- (`min(now + idle, deadline)`) with the new `@exp` for the caller to write
-- into the hash, or nil when `cur` (the `@exp` it holds) still covers it.
-- `@exp` is the key's own expiry and its index score, and runs past the
-- idle deadline by up to `slack` (the touch interval): activity moves it
-- only when the new deadline passes it, so writes within one touch
-- interval leave the TTL and the index alone (every `redis.call` costs
-- Redis 2-3 us; issue 11), and the index still orders sessions by use at
-- the granularity `@seen` has. Every read checks `@seen + idle` itself, so
-- the margin never serves a session late; it keeps an idle-expired key at
-- most `slack` longer. The score stays at or past the real expiry, which
-- `index_prune` relies on.
local function refresh(key, idx, hash, user, now, idle, deadline, cur, slack)
  local exp = math.min(now + idle, deadline)
  if cur and cur >= exp then return exp, nil end
  local at = math.min(exp + slack, deadline)
  if at <= now then
    redis.call('DEL', key)
    return exp, nil
  end
  redis.call('PEXPIREAT', key, int(at + EXPIRY_GRACE))
  if EXPIRY_GRACE > 0 then redis.call('SET', shadow_of(key), '', 'PXAT', int(at)) end
  if user then index_put(idx, hash, at) end
  return exp, at
end

-- Removes an expired session a request came upon, with the keys in `...`
-- (its lock). With expiry events on, the hash stays for the expiry
-- handler (`expire.lua`), which reports it with its user and data when
-- its shadow key runs out; the grace on its TTL keeps it until then.
local function drop_expired(key, ...)
  if EXPIRY_GRACE == 0 then
    redis.call('DEL', key, ...)
  elseif select('#', ...) > 0 then
    redis.call('DEL', ...)
  end
end

-- HSET of ARGV[from..] taken as field/value pairs, in chunks (unpack has a
-- stack limit), the pairs in `...` (if any) joining the first chunk.
local function hset_args(key, from, ...)
  local extra = {...}
  local i = from
  if #extra > 0 and i >= #ARGV then
    redis.call('HSET', key, unpack(extra))
    return
  end
  while i < #ARGV do
    local last = math.min(i + 199, #ARGV)
    if (last - i) % 2 == 0 then last = last - 1 end
    if #extra > 0 then
      local buf = extra
      for j = i, last do buf[#buf + 1] = ARGV[j] end
      redis.call('HSET', key, unpack(buf))
      extra = {}
    else
      redis.call('HSET', key, unpack(ARGV, i, last))
    end
    i = last + 1
  end
end

-- HDEL of a list of fields, in chunks.
local function hdel_list(key, fields, from, to)
  local i = from
  while i <= to do
    local last = math.min(i + 199, to)
    redis.call('HDEL', key, unpack(fields, i, last))
    i = last + 1
  end
end

-- What a key holds: 'none', 'corrupt', 'alias' (info = target hash part),
-- 'moved', 'expired' (info = meta) or 'live' (info = meta). `idle` is nil
-- in calls that do not know the idle timeout: the key's TTL enforces it.
local function inspect(key, now, idle)
  local t = redis.call('TYPE', key)['ok']
  if t == 'none' then return 'none' end
  if t ~= 'hash' then return 'corrupt' end
  local f = redis.call('HMGET', key, '@alias', '@moved', '@user', '@seen',
    '@deadline', '@created', '@issued', '@ver', '@ua', '@ip', '@ua1', '@ua2', '@ua3', '@exp')
  if f[1] then return 'alias', f[1] end
  if f[2] then return 'moved' end
  local m = {
    user = f[3], seen = tonumber(f[4]), deadline = tonumber(f[5]),
    created = f[6], issued = f[7], ver = f[8], ip = f[10], exp_at = tonumber(f[14]),
    -- The User-Agent is stored in pieces of at most 64 bytes (see
    -- `UA_CHUNK` in args.rs), so the hash stays a listpack.
    ua = f[9] and (f[9] .. (f[11] or '') .. (f[12] or '') .. (f[13] or '')),
  }
  if not (m.seen and m.deadline and tonumber(f[6]) and tonumber(f[7]) and tonumber(f[8])) then
    return 'corrupt'
  end
  m.exp = m.deadline
  if idle then m.exp = math.min(m.seen + idle, m.deadline) end
  -- `@exp` is never before the real expiry (see `refresh`) and was the
  -- key's TTL, which callers without `idle` relied on; with expiry events
  -- the key outlives it by the grace, so it is checked here.
  if m.exp_at and m.exp_at < m.exp then m.exp = m.exp_at end
  if now >= m.exp then return 'expired', m end
  return 'live', m
end

-- The live sessions of `user` listed in index `idx` (except hash part
-- `skip`), as {hash part, key, meta, lock key}. Prunes members whose session
-- is gone, expired, corrupt or a marker. Sessions of another user who
-- shares the tag are left alone. A member's session and lock keys are
-- derived from the declared index key (same `{tag}`, so the same slot; the
-- shebang makes Cluster enforce it).
local function live_of(idx, user, now, idle, skip)
  local base = string.sub(idx, 1, -4)
  local out = {}
  for _, h in ipairs(index_call('ZRANGE', idx, 0, -1)) do
    if h ~= skip then
      local key, lock = base .. 's:' .. h, base .. 'l:' .. h
      local state, m = inspect(key, now, idle)
      if state == 'live' then
        if m.user == user then out[#out + 1] = {h, key, m, lock} end
      else
        if state == 'expired' and m.user == user then drop_expired(key, lock) end
        index_call('ZREM', idx, h)
        -- Redis 7.2+ tracked the missing key `inspect` read (once per
        -- member: it is pruned now).
        if state == 'none' then untrack(key) end
      end
    end
  end
  return out
end

-- Whether lock key `lock` holds `fence` (a decimal string). A key of
-- another type (only outside interference makes one) holds no fence.
local function holds(lock, fence)
  local cur = redis.pcall('GET', lock)
  return type(cur) == 'string' and cur == fence
end

-- Follows rotation aliases from session key `key` (hash part `hash`), at
-- most 4 hops. Returns the state where it stops ('live', 'expired',
-- 'moved', 'none', 'corrupt', or 'alias' when the chain is longer), that
-- key, its hash part and its meta.
local function follow(key, hash, now, idle)
  local first = key
  for _ = 0, 4 do
    local state, info = inspect(key, now, idle)
    if state ~= 'alias' then
      -- A missing alias target (derived, so only Redis 7.2+ tracked it):
      -- see `untrack`. The caller untracks its declared keys.
      if state == 'none' and key ~= first then untrack(key) end
      return state, key, hash, info
    end
    -- A target that is not a hash part is corrupt data (and must not reach
    -- gsub's replacement string).
    if not string.find(info, '^[%w_%-]+$') then return 'corrupt', key, hash, nil end
    hash = info
    key = sibling(key, info)
  end
  return 'alias', key, hash, nil
end

-- HSET of the `d:` fields in `all` (HGETALL order) onto `key`, except those
-- in `skip`, in chunks.
local function copy_data(all, key, skip)
  local buf = {}
  for i = 1, #all, 2 do
    local f = all[i]
    if string.sub(f, 1, 2) == 'd:' and not skip[f] then
      buf[#buf + 1] = f
      buf[#buf + 1] = all[i + 1]
      if #buf >= 200 then
        redis.call('HSET', key, unpack(buf))
        buf = {}
      end
    end
  end
  if #buf > 0 then redis.call('HSET', key, unpack(buf)) end
end
