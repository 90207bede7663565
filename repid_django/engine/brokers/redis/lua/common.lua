-- Shared helpers. A script gets only the blocks it uses (see scripts.py): keep one definition
-- per blank-line-separated block, each after the blocks it uses.
-- A queue's keys all start with its base "<prefix>:{<queue>}:" (KEYS[i]); the {queue} hash tag
-- keeps them in one Redis Cluster slot. Times: run_at / failed_at are client Unix seconds;
-- lease deadlines are Redis server milliseconds (TIME), so worker clock skew cannot reap early.
-- Numbers passed to redis.call are sent exactly ("%.17g"), so scores need no formatting (a big
-- enqueue formats them as integers all the same: that is cheaper).

-- 2^40: the FIFO sequence space inside one priority band. A ready score is
-- (100 - priority) * PRI_SPAN + sequence: strict priority first, then FIFO.
local PRI_SPAN = 1099511627776

-- How many queues a script serves: its leading KEYS that are queue bases (they end with ':').
-- On a Redis Cluster, the keys the script touches follow them, declared for the Cluster only.
local NQ = #KEYS
while NQ > 0 and string.sub(KEYS[NQ], -1) ~= ':' do
  NQ = NQ - 1
end

-- Small hashes and zsets are listpacks, whose every lookup, insert or removal scans them whole:
-- a claim or a finish of 100 jobs then makes 100 scans of up to 100 entries. A key created with
-- an entry longer than the listpack limit (64 bytes by default) is a hash table or a skiplist
-- from the start, and stays one while it exists: claims (tokens, leases) and big enqueues
-- (ready) create their keys with this filler entry first and remove it at once. It is never an
-- id (ids are at most 200 characters, but a caller checks anyway).
local FILLER = [[
(filler: makes Redis encode this key as a hash table or a skiplist, not as a listpack)
(filler: makes Redis encode this key as a hash table or a skiplist, not as a listpack)
(filler: makes Redis encode this key as a hash table or a skiplist, not as a listpack)]]

-- Arguments per call of a variadic command (Lua's unpack is limited to about 8000 values).
local CHUNK = 4000

local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- `cmd key [flag] <list...>` for a flat list of arguments (`width` of them per element), in
-- chunks; returns the sum of the integer replies.
local function bulk(cmd, key, list, width, flag)
  local n = #list
  local step = CHUNK - CHUNK % width
  local total = 0
  for i = 1, n, step do
    local last = math.min(i + step - 1, n)
    if flag then
      total = total + redis.call(cmd, key, flag, unpack(list, i, last))
    else
      total = total + redis.call(cmd, key, unpack(list, i, last))
    end
  end
  return total
end

-- HMGET of any number of fields (false where missing).
local function hmget(key, fields)
  local n = #fields
  if n <= CHUNK then
    if n == 0 then
      return {}
    end
    return redis.call('HMGET', key, unpack(fields))
  end
  local out = {}
  for i = 1, n, CHUNK do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + CHUNK - 1, n)))
    for j = 1, #part do
      out[#out + 1] = part[j]
    end
  end
  return out
end

-- Make sure at least n wake tokens wait in the wake list (blocked claimers BLPOP it).
local function wake(base, n)
  local have = redis.call('LLEN', base .. 'wake')
  for _ = have + 1, n do
    redis.call('LPUSH', base .. 'wake', '1')
  end
end

-- A running message's `tokens` entry is "<lease token> <ready score>": does `token` hold it?
local function owns(held, token)
  return held and string.find(held, token, 1, true) == 1
    and string.byte(held, #token + 1) == 32
end

-- The ready score kept in a `tokens` entry.
local function held_score(held)
  return string.sub(held, string.find(held, ' ', 1, true) + 1)
end

-- The priority written in a message's body (0 when unreadable), for a message that has no
-- `pri` entry.
local function body_priority(base, id)
  local ok, data = pcall(cjson.decode, redis.call('HGET', base .. 'msgs', id) or '')
  local pri = ok and type(data) == 'table' and tonumber(data.priority) or 0
  return math.max(-100, math.min(100, math.floor(pri)))
end

-- A fresh ready score for `id` of priority `pri` (nil: kept in `pri` while the message was
-- delayed, else read from its body).
local function ready_score(base, id, pri)
  if pri == nil then
    pri = tonumber(redis.call('HGET', base .. 'pri', id)) or body_priority(base, id)
  end
  return (100 - pri) * PRI_SPAN + redis.call('INCR', base .. 'seq')
end

-- An empty queue leaves no key behind.
local function tidy(base)
  if redis.call('HLEN', base .. 'msgs') == 0 then
    redis.call('DEL', base .. 'seq', base .. 'wake')
  end
end

local function forget(base, id)
  redis.call('HDEL', base .. 'msgs', id)
  redis.call('HDEL', base .. 'pri', id)
  redis.call('HDEL', base .. 'lost', id)
  redis.call('HDEL', base .. 'tokens', id)
  redis.call('ZREM', base .. 'leases', id)
  tidy(base)
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
-- A job asked to stop (cancel.lua) whose worker died is cancelled, not run again.
local function reap(base, tnow, now, max_lost, ttl_ms, max, batch)
  local expired = redis.call('ZRANGEBYSCORE', base .. 'leases', '-inf', tnow, 'LIMIT', 0, batch)
  local stops = #expired > 0 and redis.call('EXISTS', base .. 'stop') == 1
  for _, id in ipairs(expired) do
    local held = redis.call('HGET', base .. 'tokens', id)
    redis.call('ZREM', base .. 'leases', id)
    redis.call('HDEL', base .. 'tokens', id)
    if stops and redis.call('ZREM', base .. 'stop', id) == 1 then
      bury(base, id, 'cancelled', 'cancelled while its worker was lost', now, ttl_ms, max)
    elseif redis.call('HEXISTS', base .. 'msgs', id) == 1 then
      local lost = redis.call('HINCRBY', base .. 'lost', id, 1)
      if lost > max_lost then
        bury(base, id, 'worker_lost',
          'its lease expired ' .. lost .. ' times (the worker running it died or hung)',
          now, ttl_ms, max)
      else
        local score = held and string.find(held, ' ', 1, true) and held_score(held)
        redis.call('ZADD', base .. 'ready', score or ready_score(base, id, nil), id)
        wake(base, 1)
      end
    else
      redis.call('HDEL', base .. 'lost', id)
    end
  end
  return #expired
end

-- Move delayed messages whose run_at has come to the ready zset (their `pri` entries go: a
-- ready message's priority is in its score).
local function promote(base, now, batch)
  local due = redis.call('ZRANGEBYSCORE', base .. 'delayed', '-inf', now, 'LIMIT', 0, batch)
  local n = #due
  if n == 0 then
    return 0
  end
  local pris = hmget(base .. 'pri', due)
  bulk('ZREM', base .. 'delayed', due, 1)
  bulk('HDEL', base .. 'pri', due, 1)
  local seq = redis.call('INCRBY', base .. 'seq', n) - n
  local ready = {}
  for i, id in ipairs(due) do
    local pri = tonumber(pris[i]) or body_priority(base, id)
    ready[2 * i - 1] = (100 - pri) * PRI_SPAN + seq + i
    ready[2 * i] = id
  end
  bulk('ZADD', base .. 'ready', ready, 2)
  return n
end

-- Put a message (body updated unless '') of priority `pri` back: delayed when run_at is in the
-- future (with a `pri` entry), else ready (at its old place when score is given).
local function reschedule(base, id, body, run_at, now, score, pri)
  if body ~= '' then
    redis.call('HSET', base .. 'msgs', id, body)
  end
  if run_at ~= '' and tonumber(run_at) > now then
    redis.call('ZADD', base .. 'delayed', run_at, id)
    redis.call('HSET', base .. 'pri', id, pri)
  else
    redis.call('ZADD', base .. 'ready', score or ready_score(base, id, pri), id)
  end
  wake(base, 1)
end
