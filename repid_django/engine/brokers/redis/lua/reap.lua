-- reap: KEYS = queue bases; ARGV = now, max_lost, dead_ttl_ms, dead_max.
-- Returns how many expired leases were handled.
local tnow = server_ms()
local now = tonumber(ARGV[1])
local total = 0
for q = 1, NQ do
  total = total + reap(KEYS[q], tnow, now, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), 1000)
end
return total
