-- requeue_dead: KEYS[1] = queue base; ARGV = (id, priority, fresh body) per dead letter.
-- Moves each dead letter still there back to the ready queue, unless a live copy of the id
-- exists. Returns how many were requeued.
local base = KEYS[1]
local count = 0
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('ZSCORE', base .. 'dead', id)
    and redis.call('HSETNX', base .. 'msgs', id, ARGV[i + 2]) == 1 then
    redis.call('ZADD', base .. 'ready', ready_score(base, id, tonumber(ARGV[i + 1])), id)
    drop_dead(base, { id })
    count = count + 1
  end
end
if count > 0 then
  wake(base, math.min(count, 8))
end
return count
