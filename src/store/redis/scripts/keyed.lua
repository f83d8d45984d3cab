-- keyed: one operation on one keyed session (store/keyed.rs). It follows
-- `apply` in store/memory/keyed.rs, the reference, case by case.
-- KEYS[1] the record's hash: the active and the finished session are one
-- key (field `st`), so finish and resume are one key, one slot.
-- ARGV[1] op (start|get|lock|renew_lock|unlock|update|finish|resume|remove),
-- ARGV[2] value (JSON), ARGV[3] guard kind ('version', 'fence' or ''),
-- ARGV[4] guard, ARGV[5] lease ms, ARGV[6] state asked by get,
-- ARGV[7] touch ('1'), ARGV[8..11] active absolute, active sliding,
-- finished absolute, finished sliding (ms; '-1' for none),
-- ARGV[12] release channel, ARGV[13] the release notice (origin .. 'k.' .. id).
-- Fields: st, val, ver, fence (latest issued), lf/lu (holder's fence and
-- lease end), t0 (started), since (entered the state), dl (deadline in the
-- state), exp (expiry; also the key's PEXPIREAT), w (set while a lock
-- attempt found it held: an end of that lock then publishes a notice).
-- Reply: {'record', st, val, ver, t0, since, exp, now, fence or 0} |
-- {'missing'} | {'active'} | {'finished'} | {'conflict', ver} | {'fenced'}
-- | {'held', lease left ms} | {'done', 0|1}.
-- Runs without common.lua (see scripts.rs), so it has its own clock.
local key, op = KEYS[1], ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function int(n)
  return string.format('%d', n)
end
local NEVER = 4503599627370496 -- 2^52, as NEVER_MS

local function limits(state)
  if state == 'active' then return tonumber(ARGV[8]), tonumber(ARGV[9]) end
  return tonumber(ARGV[10]), tonumber(ARGV[11])
end

local function deadline_of(state, at)
  local abs = limits(state)
  if abs < 0 then return NEVER end
  return math.min(at + abs, NEVER)
end

local function touch(r)
  local _, slide = limits(r.st)
  if slide < 0 then r.exp = r.dl else r.exp = math.min(now + slide, r.dl) end
end

local function enter(r, state)
  r.st, r.since, r.dl = state, now, deadline_of(state, now)
  r.ver = r.ver + 1
  r.lf, r.lu = nil, nil
  touch(r)
end

local function save(r)
  redis.call('HSET', key, 'st', r.st, 'val', r.val, 'ver', int(r.ver), 'fence', int(r.fence),
    't0', int(r.t0), 'since', int(r.since), 'dl', int(r.dl), 'exp', int(r.exp))
  if r.lf then
    redis.call('HSET', key, 'lf', int(r.lf), 'lu', int(r.lu))
  else
    redis.call('HDEL', key, 'lf', 'lu')
  end
  redis.call('PEXPIREAT', key, int(r.exp))
end

local function record(r, fence)
  return {'record', r.st, r.val, r.ver, r.t0, r.since, r.exp, now, fence or 0}
end

local function held_until(r)
  if r.lu and r.lu > now then return r.lu end
  return nil
end

local function held(r)
  redis.call('HSET', key, 'w', '1')
  return {'held', (held_until(r) or now) - now}
end

-- A lock of `r` ended: wake a waiter, if one found it held.
local function released(r)
  if r.w then
    redis.call('HDEL', key, 'w')
    redis.call('PUBLISH', ARGV[12], ARGV[13])
  end
end

local function refuses(r)
  local kind, g = ARGV[3], tonumber(ARGV[4])
  if kind == 'version' then
    if held_until(r) then return held(r) end
    if g ~= r.ver then return {'conflict', r.ver} end
  elseif kind == 'fence' then
    if g ~= r.fence then return {'fenced'} end
  end
  return nil
end

local f = redis.call('HMGET', key, 'st', 'val', 'ver', 'fence', 'lf', 'lu', 't0', 'since', 'dl',
  'exp', 'w')
local r = nil
if f[1] then
  r = {st = f[1], val = f[2], ver = tonumber(f[3]), fence = tonumber(f[4]), lf = tonumber(f[5]),
    lu = tonumber(f[6]), t0 = tonumber(f[7]), since = tonumber(f[8]), dl = tonumber(f[9]),
    exp = tonumber(f[10]), w = f[11]}
  if not (r.ver and r.fence and r.t0 and r.since and r.dl and r.exp and r.val)
    or (r.st ~= 'active' and r.st ~= 'finished') or r.exp <= now then
    -- Expired (or not a record of ours): absent, for every operation.
    redis.call('DEL', key)
    r = nil
  end
end

if not r then
  if op == 'start' then
    local seed = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
    r = {st = 'active', val = ARGV[2], ver = seed, fence = seed, t0 = now, since = now,
      dl = deadline_of('active', now)}
    touch(r)
    save(r)
    return record(r)
  end
  if op == 'renew_lock' or op == 'unlock' or op == 'remove' then return {'done', 0} end
  return {'missing'}
end

local active = r.st == 'active'
if op == 'start' then return {r.st} end
if op == 'get' then
  if ARGV[6] ~= r.st then return {r.st} end
  local _, slide = limits(r.st)
  -- Touch only when it moves the expiry by a tenth of the window (at most
  -- a second): a read right after another writes nothing (Expiry::touch_due).
  if ARGV[7] == '1' and slide >= 0
    and math.min(now + slide, r.dl) - r.exp >= math.max(math.min(math.floor(slide / 10), 1000), 1) then
    touch(r)
    redis.call('HSET', key, 'exp', int(r.exp))
    redis.call('PEXPIREAT', key, int(r.exp))
  end
  return record(r)
end
if op == 'lock' then
  if not active then return {'finished'} end
  if held_until(r) then return held(r) end
  r.fence = r.fence + 1
  r.lf, r.lu = r.fence, now + math.max(tonumber(ARGV[5]), 1)
  touch(r)
  save(r)
  return record(r, r.fence)
end
if op == 'renew_lock' then
  local ours = active and r.lf == tonumber(ARGV[4]) and held_until(r)
  if not ours then return {'done', 0} end
  redis.call('HSET', key, 'lu', int(now + math.max(tonumber(ARGV[5]), 1)))
  return {'done', 1}
end
if op == 'unlock' then
  if r.lf ~= tonumber(ARGV[4]) then return {'done', 0} end
  redis.call('HDEL', key, 'lf', 'lu')
  released(r)
  return {'done', 1}
end
if op == 'update' or op == 'finish' then
  if not active then return {'finished'} end
  local refused = refuses(r)
  if refused then return refused end
  if op == 'update' then
    -- Only what an update changes: the value, the version, the expiry.
    r.val = ARGV[2]
    r.ver = r.ver + 1
    touch(r)
    redis.call('HSET', key, 'val', r.val, 'ver', int(r.ver), 'exp', int(r.exp))
    redis.call('PEXPIREAT', key, int(r.exp))
    return record(r)
  end
  if r.lf then released(r) end
  enter(r, 'finished')
  save(r)
  return record(r)
end
if op == 'resume' then
  if active then return {'active'} end
  enter(r, 'active')
  save(r)
  return record(r)
end
if op == 'remove' then
  if r.lf then released(r) end
  redis.call('DEL', key)
  return {'done', 1}
end
return redis.error_reply('keyed: unknown op ' .. tostring(op))
