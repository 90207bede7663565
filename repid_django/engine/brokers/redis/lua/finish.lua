-- finish: KEYS = queue bases; ARGV = now, dead_ttl_ms, dead_max, call digest, memo_ttl_ms,
-- repeat (1 when this call is sent again because the reply to an earlier send was lost),
-- result_ttl_ms (the default), check_ids (1 when an id may appear twice), then per queue (in
-- KEYS order): how many outcomes, then each outcome: id, token, kind, result|'', and unless kind
-- is 'a': result_ttl_ms, body|'', run_at|'', priority, reason, error. Kinds: 'a' ack (the
-- message goes; its result, if any, kept for the default time), 'A' the same with its own
-- result_ttl_ms, 'n' ack of a recurring message (its next occurrence is scheduled), 'r' retry,
-- 'j' reject, 'd' dead.
-- Each outcome is fenced by its lease token; returns 1 per applied outcome, 0 if the lease was
-- lost, in argument order.
-- Idempotent: the reply is kept for memo_ttl_ms under the call's digest (a hash of its ids, tokens
-- and kinds), so a repeated send whose first one was applied gets the first answer instead of
-- "lease lost" for what it applied itself.
local now, ttl_ms, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local memo = KEYS[1] .. 'fin:' .. ARGV[4]
if ARGV[6] == '1' then
  local seen = redis.call('GET', memo)
  if seen then
    local again = {}
    for c = 1, #seen do
      again[c] = tonumber(string.sub(seen, c, c))
    end
    return again
  end
end
local result_ttl = ARGV[7]
local check_ids = ARGV[8] == '1'
local out = {}
local i = 9
for q = 1, #KEYS do
  local base = KEYS[q]
  local count = tonumber(ARGV[i])
  i = i + 1
  local starts, ids = {}, {}
  for k = 1, count do
    starts[k], ids[k] = i, ARGV[i]
    i = i + (ARGV[i + 2] == 'a' and 4 or 10)
  end
  -- The lease tokens held now, in one HMGET; leases end and acked messages go with one
  -- variadic call per key.
  local held = hmget(base .. 'tokens', ids)
  local ended, gone, applied = {}, {}, check_ids and {}
  local results = base .. 'result:'
  for k = 1, count do
    local s, id, h = starts[k], ids[k], held[k]
    local token, kind = ARGV[s + 1], ARGV[s + 2]
    -- held is "<token> <ready score>"
    local ok = h and string.sub(h, 1, #token) == token and string.byte(h, #token + 1) == 32
    if ok and applied then
      ok = not applied[id] -- a second outcome of one delivery in one call: its lease is gone
      applied[id] = true
    end
    if not ok then
      out[#out + 1] = 0
    else
      ended[#ended + 1] = id
      if kind == 'a' then
        if ARGV[s + 3] ~= '' then
          redis.call('SET', results .. id, ARGV[s + 3], 'PX', result_ttl)
        end
        gone[#gone + 1] = id
      else
        if ARGV[s + 3] ~= '' then
          redis.call('SET', results .. id, ARGV[s + 3], 'PX', ARGV[s + 4])
        end
        local body, run_at, pri = ARGV[s + 5], ARGV[s + 6], tonumber(ARGV[s + 7])
        if kind == 'A' then
          gone[#gone + 1] = id
        elseif kind == 'n' then
          redis.call('HDEL', base .. 'lost', id)
          reschedule(base, id, body, run_at, now, nil, pri)
        elseif kind == 'r' then
          reschedule(base, id, body, run_at, now, nil, pri)
        elseif kind == 'j' then
          reschedule(base, id, body, run_at, now, held_score(h), pri)
        else
          bury(base, id, ARGV[s + 8], ARGV[s + 9], now, ttl_ms, max)
          if run_at ~= '' then
            reschedule(base, id, body, run_at, now, nil, pri)
          end
        end
      end
      out[#out + 1] = 1
    end
  end
  if #ended > 0 then
    bulk('HDEL', base .. 'tokens', ended, 1)
    bulk('ZREM', base .. 'leases', ended, 1)
  end
  if #gone > 0 then
    bulk('HDEL', base .. 'msgs', gone, 1)
    if redis.call('EXISTS', base .. 'lost', base .. 'pri') > 0 then
      bulk('HDEL', base .. 'lost', gone, 1)
      bulk('HDEL', base .. 'pri', gone, 1)
    end
    tidy(base)
  end
end
redis.call('SET', memo, table.concat(out), 'PX', ARGV[5])
return out
