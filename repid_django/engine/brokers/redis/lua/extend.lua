-- extend: KEYS = queue bases; ARGV = lease_ms, then (queue index, id, token) per held delivery.
-- Pushes the lease deadline of each still-owned delivery; returns 1 per extended, 0 if lost.
local deadline = server_ms() + tonumber(ARGV[1])
local out = {}
for q = 1, NQ do
  local ids, pos = {}, {}
  for i = 2, #ARGV, 3 do
    if tonumber(ARGV[i]) == q then
      ids[#ids + 1], pos[#pos + 1] = ARGV[i + 1], i
    end
  end
  local found = hmget(KEYS[q] .. 'tokens', ids)
  local leases = {}
  for j, i in ipairs(pos) do
    local ok = owns(found[j], ARGV[i + 2])
    out[(i + 1) / 3] = ok and 1 or 0
    if ok then
      leases[#leases + 1], leases[#leases + 2] = deadline, ids[j]
    end
  end
  bulk('ZADD', KEYS[q] .. 'leases', leases, 2, 'XX')
end
return out
