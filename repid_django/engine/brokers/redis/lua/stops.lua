-- stops: KEYS = queue bases; ARGV = (queue index, id) per delivery the caller holds.
-- Returns "<queue index> <id>" for each held delivery asked to stop (see cancel.lua); and drops
-- requests older than a minute whose job no longer runs (finished meanwhile).
local out = {}
local now = redis.call('TIME')[1]
for q = 1, NQ do
  local base = KEYS[q]
  if redis.call('EXISTS', base .. 'stop') == 1 then
    for i = 1, #ARGV, 2 do
      if tonumber(ARGV[i]) == q and redis.call('ZSCORE', base .. 'stop', ARGV[i + 1]) then
        out[#out + 1] = q .. ' ' .. ARGV[i + 1]
      end
    end
    local old = redis.call('ZRANGEBYSCORE', base .. 'stop', '-inf', now - 60, 'LIMIT', 0, 100)
    for _, id in ipairs(old) do
      if redis.call('HEXISTS', base .. 'tokens', id) == 0 then
        redis.call('ZREM', base .. 'stop', id)
      end
    end
  end
end
return out
