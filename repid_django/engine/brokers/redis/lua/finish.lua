-- finish: KEYS = queue bases; ARGV = now, dead_ttl_ms, dead_max, call digest, memo_ttl_ms,
-- repeat (1 when this call is sent again because the reply to an earlier send was lost), then
-- per outcome: (queue index, id, token, kind, body|'', run_at|'', result|'', result_ttl_ms,
-- reason, error).
-- Each outcome is fenced by its lease token; returns 1 per applied outcome, 0 if the lease was lost.
-- Idempotent: the reply is kept for memo_ttl_ms under the call's digest (a hash of its ids, tokens
-- and kinds), so a repeated send whose first one was applied gets the first answer instead of
-- "lease lost" for what it applied itself.
local now, ttl_ms, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local memo = KEYS[1] .. 'fin:' .. ARGV[4]
local seen = ARGV[6] == '1' and redis.call('GET', memo)
if seen then
  local again = {}
  for c = 1, #seen do
    again[c] = tonumber(string.sub(seen, c, c))
  end
  return again
end
local out = {}
for i = 7, #ARGV, 10 do
  local base = KEYS[tonumber(ARGV[i])]
  local id, token, kind = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local body, run_at, result = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local held = redis.call('HGET', base .. 'tokens', id)
  local held_token, score = nil, nil
  if held then
    held_token, score = split_token(held)
  end
  if held_token ~= token or redis.call('HEXISTS', base .. 'msgs', id) == 0 then
    out[#out + 1] = 0
  else
    redis.call('HDEL', base .. 'tokens', id)
    redis.call('ZREM', base .. 'leases', id)
    if result ~= '' then
      redis.call('SET', base .. 'result:' .. id, result, 'PX', ARGV[i + 7])
    end
    if kind == 'ack' then
      if run_at ~= '' then
        redis.call('HDEL', base .. 'lost', id)
        reschedule(base, id, body, run_at, now, nil)
      else
        forget(base, id)
      end
    elseif kind == 'retry' then
      reschedule(base, id, body, run_at, now, nil)
    elseif kind == 'reject' then
      reschedule(base, id, body, run_at, now, score)
    else
      local pri = redis.call('HGET', base .. 'pri', id)
      bury(base, id, ARGV[i + 8], ARGV[i + 9], now, ttl_ms, max)
      if run_at ~= '' then
        redis.call('HSET', base .. 'pri', id, pri or '0')
        reschedule(base, id, body, run_at, now, nil)
      end
    end
    out[#out + 1] = 1
  end
end
redis.call('SET', memo, table.concat(out), 'PX', ARGV[5])
return out
