-- enqueue: KEYS[1] = queue base; ARGV = check_ids (1 when an id may appear twice), then
-- (id, placement, body) per message; placement is the priority of a message to run now, or
-- "<priority> <run_at>" for one whose run_at is in the future (the caller compares the times).
-- Returns a string with one character per message: '1' written, '0' where the id is already
-- queued, delayed or running (a string, not a table: cheap to build and to parse for big batches).
-- A ready message's priority is in its score; a delayed one's is kept in `pri` until promoted.
local base = KEYS[1]
local msgs = base .. 'msgs'
if #ARGV == 4 then -- one message (a producer's enqueue): the fewest commands
  local id, place = ARGV[2], ARGV[3]
  if redis.call('HSETNX', msgs, id, ARGV[4]) == 0 then
    return '0'
  end
  local sp = string.find(place, ' ', 1, true)
  if sp then
    redis.call('ZADD', base .. 'delayed', string.sub(place, sp + 1), id)
    redis.call('HSET', base .. 'pri', id, string.sub(place, 1, sp - 1))
  else
    local seq = redis.call('INCR', base .. 'seq')
    redis.call('ZADD', base .. 'ready', (100 - tonumber(place)) * PRI_SPAN + seq, id)
  end
  wake(base, 1)
  return '1'
end

-- A batch: one HMGET finds the ids already there, then one variadic write per key. The FIFO
-- sequence is reserved for the whole batch with one INCRBY (gaps are harmless).
local count = (#ARGV - 1) / 3
local ids = {}
for k = 1, count do
  ids[k] = ARGV[3 * k - 1]
end
local have = hmget(msgs, ids)
local seen = ARGV[1] == '1' and {}
local seq = redis.call('INCRBY', base .. 'seq', count) - count
local out = nil -- built from the first refused message on; all written: string.rep
local bodies, ready, delayed, pris = {}, {}, {}, {}
for k = 1, count do
  local i = 3 * k - 1
  local id = ids[k]
  if have[k] or (seen and seen[id]) then
    if not out then
      out = {}
      for j = 1, k - 1 do
        out[j] = '1'
      end
    end
    out[k] = '0'
  else
    if seen then
      seen[id] = true
    end
    bodies[#bodies + 1], bodies[#bodies + 2] = id, ARGV[i + 2]
    local place = ARGV[i + 1]
    local sp = string.find(place, ' ', 1, true)
    if sp then
      delayed[#delayed + 1], delayed[#delayed + 2] = string.sub(place, sp + 1), id
      pris[#pris + 1], pris[#pris + 2] = id, string.sub(place, 1, sp - 1)
    else
      seq = seq + 1
      ready[#ready + 1], ready[#ready + 2] = (100 - tonumber(place)) * PRI_SPAN + seq, id
    end
    if out then
      out[k] = '1'
    end
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
return out and table.concat(out) or string.rep('1', count)
