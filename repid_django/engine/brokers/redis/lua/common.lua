-- Shared helpers, prepended to every script (see redis_scripts.py).
-- A queue's keys all start with its base "<prefix>:{<queue>}:" (KEYS[i]); the {queue} hash tag
-- keeps them in one Redis Cluster slot. Times: run_at / failed_at are client Unix seconds;
-- lease deadlines are Redis server milliseconds (TIME), so worker clock skew cannot reap early.

local PRI_SPAN = 1099511627776 -- 2^40: the FIFO sequence space inside one priority band

local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function fmt(n)
  return string.format('%.0f', n)
end

-- Score in the ready zset: strict priority first (higher priority = lower score), then FIFO.
local function score_of(pri, seq)
  return fmt((100 - pri) * PRI_SPAN + seq)
end

local function ready_score(base, id)
  local pri = tonumber(redis.call('HGET', base .. 'pri', id) or '0') or 0
  return score_of(pri, redis.call('INCR', base .. 'seq'))
end

-- Make sure at least n wake tokens wait in the wake list (blocked claimers BLPOP it).
local function wake(base, n)
  local have = redis.call('LLEN', base .. 'wake')
  for _ = have + 1, n do
    redis.call('LPUSH', base .. 'wake', '1')
  end
end

-- The lease token and the ready score the message had when it was claimed ("<token> <score>").
local function split_token(value)
  local sp = string.find(value, ' ', 1, true)
  if not sp then
    return value, nil
  end
  return string.sub(value, 1, sp - 1), string.sub(value, sp + 1)
end

local function forget(base, id)
  redis.call('HDEL', base .. 'msgs', id)
  redis.call('HDEL', base .. 'pri', id)
  redis.call('HDEL', base .. 'lost', id)
  redis.call('HDEL', base .. 'tokens', id)
  redis.call('ZREM', base .. 'leases', id)
  if redis.call('HLEN', base .. 'msgs') == 0 then
    redis.call('DEL', base .. 'seq', base .. 'wake') -- an empty queue leaves no key behind
  end
end

local function drop_dead(base, ids)
  for _, id in ipairs(ids) do
    redis.call('ZREM', base .. 'dead', id)
    redis.call('HDEL', base .. 'dmsg', id)
    redis.call('HDEL', base .. 'dinfo', id)
  end
end

-- Bound the dead-letter queue: entries older than ttl go, then the oldest beyond max.
local function trim_dead(base, now, ttl_ms, max)
  drop_dead(base, redis.call('ZRANGEBYSCORE', base .. 'dead', '-inf', now - ttl_ms / 1000,
    'LIMIT', 0, 500))
  local extra = redis.call('ZCARD', base .. 'dead') - max
  if extra > 0 then
    drop_dead(base, redis.call('ZRANGE', base .. 'dead', 0, extra - 1))
  end
  for _, what in ipairs({ 'dead', 'dmsg', 'dinfo' }) do
    redis.call('PEXPIRE', base .. what, ttl_ms)
  end
end

-- Move a live message to the dead-letter queue with its stored body.
local function bury(base, id, reason, err, now, ttl_ms, max)
  local body = redis.call('HGET', base .. 'msgs', id)
  local lost = tonumber(redis.call('HGET', base .. 'lost', id) or '0')
  if body then
    redis.call('ZADD', base .. 'dead', now, id)
    redis.call('HSET', base .. 'dmsg', id, body)
    redis.call('HSET', base .. 'dinfo', id,
      cjson.encode({ reason = reason, error = err, failed_at = now, lost = lost }))
  end
  forget(base, id)
  if body then
    trim_dead(base, now, ttl_ms, max)
  end
end

-- Return expired leases (their workers died) to the queue, or bury them after max_lost.
local function reap(base, tnow, now, max_lost, ttl_ms, max, batch)
  local expired = redis.call('ZRANGEBYSCORE', base .. 'leases', '-inf', tnow, 'LIMIT', 0, batch)
  for _, id in ipairs(expired) do
    local held = redis.call('HGET', base .. 'tokens', id)
    redis.call('ZREM', base .. 'leases', id)
    redis.call('HDEL', base .. 'tokens', id)
    if redis.call('HEXISTS', base .. 'msgs', id) == 1 then
      local lost = redis.call('HINCRBY', base .. 'lost', id, 1)
      if lost > max_lost then
        bury(base, id, 'worker_lost',
          'its lease expired ' .. lost .. ' times (the worker running it died or hung)',
          now, ttl_ms, max)
      else
        local score = nil
        if held then
          local _, s = split_token(held)
          score = s
        end
        redis.call('ZADD', base .. 'ready', score or ready_score(base, id), id)
        wake(base, 1)
      end
    else
      redis.call('HDEL', base .. 'lost', id)
    end
  end
  return #expired
end

-- Move delayed messages whose run_at has come to the ready zset.
local function promote(base, now, batch)
  local due = redis.call('ZRANGEBYSCORE', base .. 'delayed', '-inf', now, 'LIMIT', 0, batch)
  for _, id in ipairs(due) do
    redis.call('ZREM', base .. 'delayed', id)
    redis.call('ZADD', base .. 'ready', ready_score(base, id), id)
  end
  return #due
end

-- Put a message (body updated unless '') back: delayed when run_at is in the future, else ready
-- (at its old place when score is given).
local function reschedule(base, id, body, run_at, now, score)
  if body ~= '' then
    redis.call('HSET', base .. 'msgs', id, body)
  end
  if run_at ~= '' and tonumber(run_at) > now then
    redis.call('ZADD', base .. 'delayed', run_at, id)
  else
    redis.call('ZADD', base .. 'ready', score or ready_score(base, id), id)
  end
  wake(base, 1)
end

