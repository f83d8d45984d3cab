-- logout: end the session a client's token names, for a request that never
-- loaded it (`LazySession`), followed through rotation aliases (same tag,
-- so the same slot) as `load` follows them. A token another request
-- replaced by a login or explicit rotation (a moved marker, or an alias
-- chain that leads to one or is too long) is left as it is: its successor
-- is not this request's to end, and requests in flight with the old token
-- need the marker to leave the client's new cookie alone.
-- KEYS[1] the token's session key (index and lock derived).
-- ARGV[1] its hash part, ARGV[2] idle ms.
-- Reply: {'ended', hash part} | {'none'} | {'moved'}.
local state, key, hash = follow(KEYS[1], ARGV[1], now_ms(), tonumber(ARGV[2]))
if state == 'moved' or state == 'alias' then return {'moved'} end
if state == 'none' then
  untrack(KEYS[1])
  return {'none'}
end
-- Live, expired or corrupt: it goes, with its lock, its index entry and
-- the alias that led to it.
redis.call('DEL', key, lock_of(key))
if key ~= KEYS[1] then redis.call('DEL', KEYS[1]) end
index_call('ZREM', index_of(key), hash)
if state == 'live' then return {'ended', hash} end
return {'none'}
