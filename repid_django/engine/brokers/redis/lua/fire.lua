-- fire: KEYS[1] = queue base; ARGV = schedule name, tick (Unix seconds), then, when the tick
-- enqueues a job: message id, priority, body (without them the tick is only marked handled).
-- Each tick of a schedule fires once however many workers race for it: the last tick handled is
-- kept in <base>sched (schedule name -> tick; '>' .. name -> the last tick that enqueued a
-- job), and the job is enqueued by the same script only
-- when the tick is later than that. Returns 1 when this call enqueued the job, else 0 (handled
-- already, only marked, or a job of that id is still queued or running).
local base = KEYS[1]
local name, tick = ARGV[1], tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', base .. 'sched', name))
if last and last >= tick then
  return 0
end
redis.call('HSET', base .. 'sched', name, ARGV[2])
local id = ARGV[3]
if not id or redis.call('HSETNX', base .. 'msgs', id, ARGV[5]) == 0 then
  return 0
end
redis.call('HSET', base .. 'sched', '>' .. name, ARGV[2]) -- the last tick that made a job
local seq = redis.call('INCR', base .. 'seq')
redis.call('ZADD', base .. 'ready', (100 - tonumber(ARGV[4])) * PRI_SPAN + seq, id)
wake(base, 1)
return 1
