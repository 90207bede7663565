-- claim: KEYS = queue bases; ARGV = now, limit, lease_ms, token, max_lost, dead_ttl_ms, dead_max,
-- alone_ok.
-- Reaps expired leases, promotes due delayed messages, then leases up to `limit` ready messages
-- (strict priority across the queues, FIFO within one).
-- A message on its last chance (max_lost > 0 and lost >= max_lost: one more expired lease buries
-- it) is only leased alone, to a claimer that holds nothing else (alone_ok = '1'): its batch ends
-- before it, and if the claimer is busy it stays where it is and the reply says so. So a job that
-- kills its worker cannot take innocent jobs to the dead-letter queue with it.
-- Returns {next_run_at|-1, last_chance_waiting (0/1), (queue index, id, lost, body)...}.
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local token = ARGV[4]
local max_lost, ttl_ms, max = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local alone_ok = ARGV[8] == '1'
local tnow = server_ms()
local deadline = tnow + tonumber(ARGV[3])
for q = 1, #KEYS do
  reap(KEYS[q], tnow, now, max_lost, ttl_ms, max, 200)
  promote(KEYS[q], now, 1000)
end

local out = { -1, 0 }
local taken = 0
-- Lease `id` (already out of the ready zset); false when the batch must end before it (it is
-- put back at `score`).
local function lease(q, id, score)
  local base = KEYS[q]
  local body = redis.call('HGET', base .. 'msgs', id)
  if not body then
    forget(base, id)
    return true
  end
  local lost = tonumber(redis.call('HGET', base .. 'lost', id) or '0')
  local last = max_lost > 0 and lost >= max_lost
  if last and not (alone_ok and taken == 0) then
    redis.call('ZADD', base .. 'ready', score, id)
    out[2] = 1
    return false
  end
  redis.call('HSET', base .. 'tokens', id, token .. ' ' .. score)
  redis.call('ZADD', base .. 'leases', deadline, id)
  out[#out + 1] = q
  out[#out + 1] = id
  out[#out + 1] = lost
  out[#out + 1] = body
  taken = taken + 1
  return not last
end

if #KEYS == 1 then
  local popped = redis.call('ZPOPMIN', KEYS[1] .. 'ready', limit)
  local stopped = false
  for i = 1, #popped, 2 do
    if stopped then
      redis.call('ZADD', KEYS[1] .. 'ready', popped[i + 1], popped[i])
    elseif not lease(1, popped[i], popped[i + 1]) then
      stopped = true
    end
  end
else
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
    if not lease(best, best_id, best_score) then
      break
    end
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
