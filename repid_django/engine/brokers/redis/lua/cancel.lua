-- cancel: KEYS[1] = queue base; ARGV = id, now. Cancels a job: a waiting (ready or delayed) one
-- is removed (returns 1); for a running one, a stop request is recorded in <base>stop (id ->
-- request time), which the lease keeper of the worker holding it polls (returns 2); else 0.
local base = KEYS[1]
local id = ARGV[1]
local removed = redis.call('ZREM', base .. 'ready', id) + redis.call('ZREM', base .. 'delayed', id)
if removed > 0 then
  forget(base, id)
  return 1
end
if redis.call('HEXISTS', base .. 'tokens', id) == 1 then
  redis.call('ZADD', base .. 'stop', ARGV[2], id)
  return 2
end
return 0
