-- requeue_dead: KEYS[1] = queue base; ARGV = (id, priority, fresh body) per dead letter (the
-- caller sends a chunk at a time: admin.py).
-- Moves each dead letter still there back to the ready queue (in argument order), unless a
-- live copy of the id exists (it stays dead). One variadic call per key for the whole chunk.
-- Returns how many were requeued.
local base = KEYS[1]
local n = #ARGV / 3
local ids = {}
for k = 1, n do
  ids[k] = ARGV[3 * k - 2]
end
local dead, live = {}, hmget(base .. 'msgs', ids)
for i = 1, n, CHUNK do
  local part = redis.call('ZMSCORE', base .. 'dead', unpack(ids, i, math.min(i + CHUNK - 1, n)))
  for j = 1, #part do
    dead[i + j - 1] = part[j]
  end
end
local chosen, seen = {}, {}
for k = 1, n do
  local id = ids[k]
  if dead[k] and not live[k] and not seen[id] then
    seen[id] = true
    chosen[#chosen + 1] = k
  end
end
local count = #chosen
if count == 0 then
  return 0
end
local seq = redis.call('INCRBY', base .. 'seq', count) - count
local bodies, ready, gone = {}, {}, {}
for j, k in ipairs(chosen) do
  local id = ids[k]
  bodies[2 * j - 1], bodies[2 * j] = id, ARGV[3 * k]
  ready[2 * j - 1], ready[2 * j] = (100 - tonumber(ARGV[3 * k - 1])) * PRI_SPAN + seq + j, id
  gone[j] = id
end
bulk('HSET', base .. 'msgs', bodies, 2)
bulk('ZADD', base .. 'ready', ready, 2)
bulk('ZREM', base .. 'dead', gone, 1)
bulk('HDEL', base .. 'dmsg', gone, 1)
bulk('HDEL', base .. 'dinfo', gone, 1)
wake(base, math.min(count, 8))
return count
