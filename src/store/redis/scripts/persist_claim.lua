-- The persistence queue (persist.rs): leases up to ARGV[1] due jobs for
-- ARGV[2] ms, earliest first, counting a try each.
-- KEYS as in persist_enqueue.lua. Reply: {{key, payload, generation, tries}, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, key in ipairs(keys) do
    local meta = redis.call('HGET', KEYS[3], key)
    local payload = redis.call('HGET', KEYS[2], key)
    local gen, tries
    if meta then
        gen, tries = string.match(meta, '^(%d+),(%d+),%d$')
    end
    if not gen or not payload then
        -- A half-written job (not made by these scripts): dropped whole.
        redis.call('ZREM', KEYS[1], key)
        redis.call('HDEL', KEYS[2], key)
        redis.call('HDEL', KEYS[3], key)
    else
        tries = tonumber(tries) + 1
        redis.call('HSET', KEYS[3], key, gen .. ',' .. tries .. ',1')
        redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), key)
        out[#out + 1] = {key, payload, gen, tostring(tries)}
    end
end
return out
