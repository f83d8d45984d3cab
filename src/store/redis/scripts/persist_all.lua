-- The persistence queue (persist.rs): every waiting job due now
-- (persist_all). KEYS as in persist_enqueue.lua. Reply: how many moved.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local moved = 0
for _, key in ipairs(keys) do
    local meta = redis.call('HGET', KEYS[3], key)
    if meta and string.sub(meta, -2) == ',0' then
        redis.call('ZADD', KEYS[1], now, key)
        moved = moved + 1
    end
end
return moved
