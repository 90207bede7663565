-- enqueue: KEYS[1] = queue base; ARGV = check_ids (1 when an id may appear twice), then
-- (id, placement, body) per message; placement is the priority of a message to run now, or
-- "<priority> <run_at>" for one whose run_at is in the future (the caller compares the times).
-- Priorities are -100..100: a placement of at most 4 characters has no space.
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
  local sp = #place > 4 and string.find(place, ' ', 1, true)
  if not sp then
    local seq = redis.call('INCR', base .. 'seq')
    redis.call('ZADD', base .. 'ready', (100 - tonumber(place)) * PRI_SPAN + seq, id)
  else
    redis.call('ZADD', base .. 'delayed', string.sub(place, sp + 1), id)
    redis.call('HSET', base .. 'pri', id, string.sub(place, 1, sp - 1))
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
-- Scores as integer strings where Lua's %d is 64-bit (cheaper than the float formatting a
-- number argument gets); the score's first part per priority is computed once.
local wide = string.format('%d', PRI_SPAN) == '1099511627776'
local bands = {}
local clash = false -- an id is the FILLER (see common.lua)
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
    clash = clash or id == FILLER
    bodies[#bodies + 1], bodies[#bodies + 2] = id, ARGV[i + 2]
    local place = ARGV[i + 1]
    local sp = #place > 4 and string.find(place, ' ', 1, true)
    if not sp then
      local band = bands[place]
      if not band then
        band = (100 - tonumber(place)) * PRI_SPAN
        bands[place] = band
      end
      seq = seq + 1
      local n = #ready
      ready[n + 1], ready[n + 2] = wide and string.format('%d', band + seq) or band + seq, id
    else
      delayed[#delayed + 1], delayed[#delayed + 2] = string.sub(place, sp + 1), id
      pris[#pris + 1], pris[#pris + 2] = id, string.sub(place, 1, sp - 1)
    end
    if out then
      out[k] = '1'
    end
  end
end
local written = #bodies / 2
if written > 0 then
  bulk('HSET', msgs, bodies, 2)
  -- Over 128 entries (the default listpack limit) a new ready zset would become a skiplist
  -- anyway: it starts as one.
  local pad = #ready > 256 and not clash and redis.call('EXISTS', base .. 'ready') == 0
  if pad then
    redis.call('ZADD', base .. 'ready', 0, FILLER)
  end
  bulk('ZADD', base .. 'ready', ready, 2)
  if pad then
    redis.call('ZREM', base .. 'ready', FILLER)
  end
  bulk('ZADD', base .. 'delayed', delayed, 2)
  bulk('HSET', base .. 'pri', pris, 2)
  wake(base, math.min(written, 8))
end
return out and table.concat(out) or string.rep('1', count)
