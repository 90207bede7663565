-- enqueue: KEYS[1] = queue base; ARGV = now, then (id, priority, run_at|'', body) per message.
-- Returns 1 per written message, 0 where the id is already queued, delayed or running.
local base = KEYS[1]
local now = tonumber(ARGV[1])
local out = {}
local written = 0
for i = 2, #ARGV, 4 do
  local id = ARGV[i]
  if redis.call('HSETNX', base .. 'msgs', id, ARGV[i + 3]) == 0 then
    out[#out + 1] = 0
  else
    redis.call('HSET', base .. 'pri', id, ARGV[i + 1])
    local run_at = ARGV[i + 2]
    if run_at ~= '' and tonumber(run_at) > now then
      redis.call('ZADD', base .. 'delayed', run_at, id)
    else
      redis.call('ZADD', base .. 'ready', ready_score(base, id), id)
    end
    written = written + 1
    out[#out + 1] = 1
  end
end
if written > 0 then
  wake(base, math.min(written, 8))
end
return out
