-- enqueue: KEYS[1] = queue base; ARGV = now, then (id, priority, run_at|'', body) per message.
-- Returns a string with one character per message: '1' written, '0' where the id is already
-- queued, delayed or running (a string, not a table: cheap to build and to parse for big batches).
-- A ready message's priority is in its score; a delayed one's is kept in `pri` until promoted.
local base = KEYS[1]
local now = tonumber(ARGV[1])
local msgs = base .. 'msgs'
if #ARGV == 5 then -- one message (a producer's enqueue): the fewest commands
  local id, run_at = ARGV[2], ARGV[4]
  if redis.call('HSETNX', msgs, id, ARGV[5]) == 0 then
    return '0'
  end
  if run_at ~= '' and tonumber(run_at) > now then
    redis.call('ZADD', base .. 'delayed', run_at, id)
    redis.call('HSET', base .. 'pri', id, ARGV[3])
  else
    local seq = redis.call('INCR', base .. 'seq')
    redis.call('ZADD', base .. 'ready', (100 - tonumber(ARGV[3])) * PRI_SPAN + seq, id)
  end
  wake(base, 1)
  return '1'
end

-- A batch: one HMGET finds the ids already there, then one variadic write per key. The FIFO
-- sequence is reserved for the whole batch with one INCRBY (gaps are harmless).
local count = (#ARGV - 1) / 4
local ids = {}
for k = 1, count do
  ids[k] = ARGV[4 * k - 2]
end
local have = hmget(msgs, ids)
local seq = redis.call('INCRBY', base .. 'seq', count) - count
local out, seen = {}, {}
local bodies, ready, delayed, pris = {}, {}, {}, {}
for k = 1, count do
  local i = 4 * k - 2
  local id = ids[k]
  if have[k] or seen[id] then
    out[k] = '0'
  else
    seen[id] = true
    bodies[#bodies + 1] = id
    bodies[#bodies + 1] = ARGV[i + 3]
    local run_at = ARGV[i + 2]
    if run_at ~= '' and tonumber(run_at) > now then
      delayed[#delayed + 1] = run_at
      delayed[#delayed + 1] = id
      pris[#pris + 1] = id
      pris[#pris + 1] = ARGV[i + 1]
    else
      seq = seq + 1
      ready[#ready + 1] = (100 - tonumber(ARGV[i + 1])) * PRI_SPAN + seq
      ready[#ready + 1] = id
    end
    out[k] = '1'
  end
end
local written = #bodies / 2
if written > 0 then
  bulk('HSET', msgs, bodies, 2)
  bulk('ZADD', base .. 'ready', ready, 2)
  bulk('ZADD', base .. 'delayed', delayed, 2)
  bulk('HSET', base .. 'pri', pris, 2)
  wake(base, math.min(written, 8))
end
return table.concat(out)
