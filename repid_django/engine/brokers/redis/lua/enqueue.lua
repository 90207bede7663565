-- enqueue: KEYS[1] = queue base; ARGV = now, then (id, priority, run_at|'', body) per message.
-- Returns a string with one character per message: '1' written, '0' where the id is already
-- queued, delayed or running (a string, not a table: cheap to build and to parse for big batches).
-- The FIFO sequence is reserved for the whole batch with one INCRBY (gaps are harmless).
local base = KEYS[1]
local now = tonumber(ARGV[1])
local count = (#ARGV - 1) / 4
local seq = redis.call('INCRBY', base .. 'seq', count) - count
local out = {}
local written = 0
for i = 2, #ARGV, 4 do
  local id = ARGV[i]
  if redis.call('HSETNX', base .. 'msgs', id, ARGV[i + 3]) == 0 then
    out[#out + 1] = '0'
  else
    local pri = ARGV[i + 1]
    redis.call('HSET', base .. 'pri', id, pri)
    local run_at = ARGV[i + 2]
    if run_at ~= '' and tonumber(run_at) > now then
      redis.call('ZADD', base .. 'delayed', run_at, id)
    else
      seq = seq + 1
      redis.call('ZADD', base .. 'ready', score_of(tonumber(pri), seq), id)
    end
    written = written + 1
    out[#out + 1] = '1'
  end
end
if written > 0 then
  wake(base, math.min(written, 8))
end
return table.concat(out)
