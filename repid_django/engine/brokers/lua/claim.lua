-- claim: KEYS = queue bases; ARGV = now, limit, lease_ms, token, max_lost, dead_ttl_ms, dead_max.
-- Reaps expired leases, promotes due delayed messages, then leases up to `limit` ready messages
-- (strict priority across the queues, FIFO within one).
-- Returns {next_run_at|-1, (queue index, id, lost, body)...}.
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local token = ARGV[4]
local max_lost, ttl_ms, max = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local tnow = server_ms()
local deadline = tnow + tonumber(ARGV[3])
for q = 1, #KEYS do
  reap(KEYS[q], tnow, now, max_lost, ttl_ms, max, 200)
  promote(KEYS[q], now, 1000)
end

local out = { -1 }
local function lease(q, id, score)
  local base = KEYS[q]
  local body = redis.call('HGET', base .. 'msgs', id)
  if not body then
    forget(base, id)
    return
  end
  redis.call('HSET', base .. 'tokens', id, token .. ' ' .. score)
  redis.call('ZADD', base .. 'leases', deadline, id)
  out[#out + 1] = q
  out[#out + 1] = id
  out[#out + 1] = tonumber(redis.call('HGET', base .. 'lost', id) or '0')
  out[#out + 1] = body
end

if #KEYS == 1 then
  local popped = redis.call('ZPOPMIN', KEYS[1] .. 'ready', limit)
  for i = 1, #popped, 2 do
    lease(1, popped[i], popped[i + 1])
  end
else
  local taken = 0
  while taken < limit do
    local best, best_id, best_score = nil, nil, nil
    for q = 1, #KEYS do
      local head = redis.call('ZRANGE', KEYS[q] .. 'ready', 0, 0, 'WITHSCORES')
      if head[1] and (best == nil or tonumber(head[2]) < tonumber(best_score)) then
        best, best_id, best_score = q, head[1], head[2]
      end
    end
    if best == nil then
      break
    end
    redis.call('ZREM', KEYS[best] .. 'ready', best_id)
    lease(best, best_id, best_score)
    taken = taken + 1
  end
end

for q = 1, #KEYS do
  local base = KEYS[q]
  if redis.call('ZCARD', base .. 'ready') > 0 then
    wake(base, 1)
  else
    redis.call('DEL', base .. 'wake')
    if redis.call('ZCARD', base .. 'delayed') == 0 and redis.call('ZCARD', base .. 'leases') == 0 then
      redis.call('DEL', base .. 'seq')
    end
  end
  local first = redis.call('ZRANGE', base .. 'delayed', 0, 0, 'WITHSCORES')
  if first[2] and (out[1] == -1 or tonumber(first[2]) < tonumber(out[1])) then
    out[1] = first[2]
  end
end
return out
