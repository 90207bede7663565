-- list: KEYS[1] = queue base; ARGV = 'ready'|'delayed', offset, limit.
-- Returns (id, body) pairs in serving order (ready) or run_at order (delayed).
local base = KEYS[1]
local offset = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', base .. ARGV[1], offset, offset + tonumber(ARGV[3]) - 1)
local out = {}
for _, id in ipairs(ids) do
  local body = redis.call('HGET', base .. 'msgs', id)
  if body then
    out[#out + 1] = id
    out[#out + 1] = body
  end
end
return out
