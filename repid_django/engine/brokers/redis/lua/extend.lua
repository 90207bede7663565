-- extend: KEYS = queue bases; ARGV = lease_ms, then (queue index, id, token) per held delivery.
-- Pushes the lease deadline of each still-owned delivery; returns 1 per extended, 0 if lost.
local deadline = server_ms() + tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV, 3 do
  local base = KEYS[tonumber(ARGV[i])]
  local id = ARGV[i + 1]
  local held = redis.call('HGET', base .. 'tokens', id)
  if held and split_token(held) == ARGV[i + 2] then
    redis.call('ZADD', base .. 'leases', 'XX', deadline, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
