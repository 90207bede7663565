-- purge_dead: KEYS[1] = queue base; ARGV = ids (none: all). Returns how many were deleted.
-- All: the three keys are UNLINKed (Redis frees big ones in a background thread), so the
-- script holds Redis for microseconds however many dead letters there are. Given ids: the
-- caller sends a chunk at a time (admin.py); one variadic call per key for the whole chunk.
local base = KEYS[1]
if #ARGV == 0 then
  local count = redis.call('ZCARD', base .. 'dead')
  redis.call('UNLINK', base .. 'dead', base .. 'dmsg', base .. 'dinfo')
  return count
end
local n = #ARGV
local gone, seen = {}, {}
for i = 1, n, CHUNK do
  local last = math.min(i + CHUNK - 1, n)
  local found = redis.call('ZMSCORE', base .. 'dead', unpack(ARGV, i, last))
  for j = 1, last - i + 1 do
    local id = ARGV[i + j - 1]
    if found[j] and not seen[id] then
      seen[id] = true
      gone[#gone + 1] = id
    end
  end
end
bulk('ZREM', base .. 'dead', gone, 1)
bulk('HDEL', base .. 'dmsg', gone, 1)
bulk('HDEL', base .. 'dinfo', gone, 1)
return #gone
