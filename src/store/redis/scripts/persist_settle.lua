-- The persistence queue (persist.rs): a worker's verdict on a job it
-- claimed, applied only if the job is still that claim's.
-- KEYS as in persist_enqueue.lua. ARGV: key, generation, tries, retry ms
-- (negative: done, remove it). Reply: 1 applied, 0 not the claim's.
local key = ARGV[1]
if redis.call('HGET', KEYS[3], key) ~= ARGV[2] .. ',' .. ARGV[3] .. ',1' then
    return 0
end
local retry = tonumber(ARGV[4])
if retry < 0 then
    redis.call('ZREM', KEYS[1], key)
    redis.call('HDEL', KEYS[2], key)
    redis.call('HDEL', KEYS[3], key)
else
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('HSET', KEYS[3], key, ARGV[2] .. ',' .. ARGV[3] .. ',0')
    redis.call('ZADD', KEYS[1], now + retry, key)
end
return 1
