-- The persistence queue (persist.rs): adds or merges one job.
-- KEYS: due (zset key -> due ms), jobs (hash key -> payload),
--       meta (hash key -> "generation,tries,leased").
-- ARGV: key, payload, delay ms.
-- A waiting job keeps the earlier due time and takes the new payload; a
-- leased one becomes a new occurrence (next generation, no tries), so its
-- handler's settle no longer matches.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = ARGV[1]
local due = now + tonumber(ARGV[3])
local meta = redis.call('HGET', KEYS[3], key)
local gen = 1
if meta then
    local g, _, leased = string.match(meta, '^(%d+),(%d+),(%d)$')
    if leased == '0' then
        local current = tonumber(redis.call('ZSCORE', KEYS[1], key))
        if current and current < due then
            due = current
        end
        gen = nil
    else
        gen = tonumber(g or '0') + 1
    end
end
if gen then
    redis.call('HSET', KEYS[3], key, gen .. ',0,0')
end
redis.call('HSET', KEYS[2], key, ARGV[2])
redis.call('ZADD', KEYS[1], due, key)
return 1
