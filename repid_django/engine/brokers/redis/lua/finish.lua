-- finish: KEYS = queue bases; ARGV = now, dead_ttl_ms, dead_max, call digest, memo_ttl_ms,
-- repeat (1 when this call is sent again because the reply to an earlier send was lost),
-- result_ttl_ms (the default), check_ids (1 when an id may appear twice), then per queue (in
-- KEYS order) how many lease tokens ("<n>w" for a queue with a concurrency limit: a waiting
-- claimer is woken once its slots are freed), and per token: the token, how many plain acks, how many
-- other outcomes, then (id, result|'') per plain ack (the message goes, its result is kept for
-- the default time) and (id, kind, result|'', result_ttl_ms, body|'', run_at|'', priority,
-- reason, error) per other outcome. Kinds: 'A' ack (with its own result time), 'n' ack of a
-- recurring message (its next occurrence is scheduled), 'r' retry, 'j' reject, 'd' dead.
-- Each outcome is fenced by its lease token; returns a string with one character per outcome,
-- in argument order: '1' applied, '0' the lease was lost.
-- Idempotent: the reply is kept for memo_ttl_ms under the call's digest (a hash of its ids, tokens
-- and kinds), so a repeated send whose first one was applied gets the first answer instead of
-- "lease lost" for what it applied itself.
local now, ttl_ms, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local memo = KEYS[1] .. 'fin:' .. ARGV[4]
if ARGV[6] == '1' then
  local seen = redis.call('GET', memo)
  if seen then
    return seen
  end
end
local result_ttl = ARGV[7]
local check_ids = ARGV[8] == '1'
local out = {}
local i = 9
for q = 1, NQ do
  local base = KEYS[q]
  local results = base .. 'result:'
  -- ended: ids whose lease ends; gone: those whose message goes too (the same list until an
  -- outcome keeps its message). Both are removed with one variadic call per key.
  local ended, gone, applied = {}, nil, check_ids and {}
  local groups = tonumber(ARGV[i]) -- "<n>w": a limited queue, wake a claimer at the end
  local wake_after = not groups
  groups = groups or tonumber(string.sub(ARGV[i], 1, -2))
  i = i + 1
  for _ = 1, groups do
    local token = ARGV[i]
    local plain, others = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    local first = i + 3 -- the first plain ack; the others from `rest` on
    local rest = first + 2 * plain
    i = rest + 9 * others
    local ids = {}
    for k = 1, plain do
      ids[k] = ARGV[first + 2 * k - 2]
    end
    for k = 1, others do
      ids[plain + k] = ARGV[rest + 9 * k - 9]
    end
    local held = hmget(base .. 'tokens', ids) -- "<token> <ready score>" per running id
    local tl = #token
    for k = 1, plain + others do
      local id, h = ids[k], held[k]
      local ok = h and string.byte(h, tl + 1) == 32 and string.find(h, token, 1, true) == 1
      if ok and applied then
        ok = not applied[id] -- a second outcome of one delivery in one call: its lease is gone
        applied[id] = true
      end
      if not ok then
        out[#out + 1] = '0'
      else
        local e = #ended + 1
        ended[e] = id
        if k <= plain then
          local result = ARGV[first + 2 * k - 1]
          if result ~= '' then
            redis.call('SET', results .. id, result, 'PX', result_ttl)
          end
          if gone then
            gone[#gone + 1] = id
          end
        else
          if not gone then
            gone = {}
            for j = 1, e - 1 do
              gone[j] = ended[j]
            end
          end
          local s = rest + 9 * (k - plain) - 9
          local kind = ARGV[s + 1]
          if ARGV[s + 2] ~= '' then
            redis.call('SET', results .. id, ARGV[s + 2], 'PX', ARGV[s + 3])
          end
          local body, run_at, pri = ARGV[s + 4], ARGV[s + 5], tonumber(ARGV[s + 6])
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
            bury(base, id, ARGV[s + 7], ARGV[s + 8], now, ttl_ms, max)
            if run_at ~= '' then
              reschedule(base, id, body, run_at, now, nil, pri)
            end
          end
        end
        out[#out + 1] = '1'
      end
    end
  end
  if #ended > 0 then
    bulk('HDEL', base .. 'tokens', ended, 1)
    bulk('ZREM', base .. 'leases', ended, 1)
  end
  gone = gone or ended
  if #gone > 0 then
    bulk('HDEL', base .. 'msgs', gone, 1)
    if redis.call('EXISTS', base .. 'lost') == 1 then
      bulk('HDEL', base .. 'lost', gone, 1)
    end
    -- `pri` holds the priorities of the delayed messages, one each; more entries were left by
    -- an older version (it kept one for every message).
    if redis.call('HLEN', base .. 'pri') > redis.call('ZCARD', base .. 'delayed') then
      bulk('HDEL', base .. 'pri', gone, 1)
    end
    tidy(base)
  end
  if wake_after and #ended > 0 then
    wake(base, 1) -- slots were freed: a claimer held back by the limit may go on
  end
end
local reply = table.concat(out)
redis.call('SET', memo, reply, 'PX', ARGV[5])
return reply
