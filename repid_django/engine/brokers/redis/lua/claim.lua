-- claim: KEYS = queue bases; ARGV = now, limit, lease_ms, token, max_lost, dead_ttl_ms, dead_max,
-- alone_ok, repeat, previous token.
-- Reaps expired leases, promotes due delayed messages, then leases up to `limit` ready messages
-- (strict priority across the queues, FIFO within one).
-- A message on its last chance (max_lost > 0 and lost >= max_lost: one more expired lease buries
-- it) is only leased alone, to a claimer that holds nothing else (alone_ok = '1'): its batch ends
-- before it, and if the claimer is busy it stays where it is and the reply says so. So a job that
-- kills its worker cannot take innocent jobs to the dead-letter queue with it.
-- A paused queue (key <base>paused) is reaped and promoted but offers nothing, and wakes no one.
-- Returns {next_run_at|-1, last_chance_waiting (0/1), info, (id, body)...}: next_run_at only
-- when nothing was leased; info is '' when every leased message comes from KEYS[1] with no lost
-- lease, else "<queue index>,<lost>" per leased message, joined by spaces.
-- Idempotent: what a claim leases is remembered for the lease time under its token (key
-- <KEYS[1]>clm:<token>, the leased ids packed); a send repeated because its reply was lost
-- (repeat = '1') gets the messages that first send leased and still holds, not a second batch.
-- The claimer's next claim names its previous token, whose memo is then dropped.
local memo = KEYS[1] .. 'clm:' .. ARGV[4]
if ARGV[9] == '1' then
  local seen = redis.call('GET', memo)
  if seen then -- kept: this answer may be lost too (the claimer's next claim drops it)
    local got = cmsgpack.unpack(seen)
    local out, info = { -1, 0, '' }, {}
    for k = 1, #got, 2 do
      local q, id = got[k], got[k + 1]
      local base = KEYS[q]
      if base and owns(redis.call('HGET', base .. 'tokens', id), ARGV[4]) then
        local body = redis.call('HGET', base .. 'msgs', id)
        if body then
          out[#out + 1], out[#out + 2] = id, body
          info[#info + 1] = q .. ',' .. (tonumber(redis.call('HGET', base .. 'lost', id)) or 0)
        end
      end
    end
    out[3] = table.concat(info, ' ')
    return out
  end
end
if ARGV[10] ~= '' then
  redis.call('DEL', KEYS[1] .. 'clm:' .. ARGV[10])
end
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local token = ARGV[4]
local max_lost, ttl_ms, max = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local alone_ok = ARGV[8] == '1'
local tnow = server_ms()
local deadline = string.format('%.0f', tnow + tonumber(ARGV[3])) -- formatted once, not per job
local nq = #KEYS
local paused = {} -- a paused queue (ops.pause_queue) offers nothing; it still reaps and promotes
for q = 1, nq do
  reap(KEYS[q], tnow, now, max_lost, ttl_ms, max, 200)
  promote(KEYS[q], now, 1000)
  paused[q] = redis.call('EXISTS', KEYS[q] .. 'paused') == 1
end

-- The candidates in serving order: ids, ready scores and (several queues) queue indexes. One
-- queue: popped at once (what is not leased goes back); several: merged from each queue's head,
-- removed once leased.
local cid, cscore, cq = {}, {}, nil
if nq == 1 then
  local popped = paused[1] and {} or redis.call('ZPOPMIN', KEYS[1] .. 'ready', limit)
  for k = 1, #popped / 2 do
    cid[k], cscore[k] = popped[2 * k - 1], popped[2 * k]
  end
else
  cq = {}
  local heads, at = {}, {}
  for q = 1, nq do
    heads[q] = paused[q] and {}
      or redis.call('ZRANGE', KEYS[q] .. 'ready', 0, limit - 1, 'WITHSCORES')
    at[q] = 1
  end
  while #cid < limit do
    local best, best_score = nil, nil
    for q = 1, nq do
      local s = heads[q][at[q] + 1]
      if s and (best == nil or tonumber(s) < best_score) then
        best, best_score = q, tonumber(s)
      end
    end
    if best == nil then
      break
    end
    local i = at[best]
    cid[#cid + 1], cscore[#cscore + 1], cq[#cq + 1] = heads[best][i], heads[best][i + 1], best
    at[best] = i + 2
  end
end

-- Bodies and lost-lease counts: one HMGET per queue and hash (none when no lease was ever lost).
local bodies, losts = {}, {}
for q = 1, nq do
  local base, ids, pos = KEYS[q], cid, nil
  if cq then
    ids, pos = {}, {}
    for k = 1, #cid do
      if cq[k] == q then
        ids[#ids + 1], pos[#pos + 1] = cid[k], k
      end
    end
  end
  if #ids > 0 then
    local b = hmget(base .. 'msgs', ids)
    local l = redis.call('EXISTS', base .. 'lost') == 1 and hmget(base .. 'lost', ids)
    if pos then
      for j = 1, #ids do
        bodies[pos[j]], losts[pos[j]] = b[j], l and tonumber(l[j])
      end
    else
      bodies = b
      if l then
        for k = 1, #ids do
          losts[k] = tonumber(l[k])
        end
      end
    end
  end
end

-- `tokens` and `leases` are created with a FILLER entry (see common.lua), unless a leased id
-- is the filler or its field.
local clash = false

local out = { -1, 0, '' }
local iq, il, plain = {}, {}, nq == 1
local last_at = max_lost > 0 and max_lost or math.huge
local held = token .. ' ' -- a tokens entry: "<token> <ready score>"
local tokens, leases, taken, used = {}, {}, 0, 0
local mine = {} -- (queue index, id) per leased message: the memo
for q = 1, nq do
  tokens[q], leases[q] = {}, {}
end
for k = 1, #cid do
  local q, id = cq and cq[k] or 1, cid[k]
  if not bodies[k] then
    forget(KEYS[q], id) -- a ready entry without a body: drop it
  else
    local lost = losts[k] or 0
    local last = lost >= last_at
    if last and not (alone_ok and taken == 0) then
      out[2] = 1 -- the batch ends before it; it stays (or goes back) where it was
      break
    end
    local t, l = tokens[q], leases[q]
    local n = #t
    t[n + 1], t[n + 2] = id, held .. cscore[k]
    l[n + 1], l[n + 2] = deadline, id
    clash = clash or id == '' or id == FILLER
    taken = taken + 1
    out[2 * taken + 2], out[2 * taken + 3] = id, bodies[k]
    mine[2 * taken - 1], mine[2 * taken] = q, id
    if plain and (lost ~= 0 or q ~= 1) then
      plain = false
      for j = 1, taken - 1 do
        iq[j], il[j] = 1, 0
      end
    end
    if not plain then
      iq[taken], il[taken] = q, lost
    end
    if last then
      used = k
      break
    end
  end
  used = k
end

for q = 1, nq do
  local base = KEYS[q]
  local t, l = tokens[q], leases[q]
  if #l > 0 then
    local pad = not clash and redis.call('EXISTS', base .. 'leases') == 0
    if pad then
      redis.call('HSET', base .. 'tokens', '', FILLER)
      redis.call('ZADD', base .. 'leases', 0, FILLER)
    end
    bulk('HSET', base .. 'tokens', t, 2)
    bulk('ZADD', base .. 'leases', l, 2)
    if pad then
      redis.call('HDEL', base .. 'tokens', '')
      redis.call('ZREM', base .. 'leases', FILLER)
    end
  end
end
if cq then
  for q = 1, nq do
    local gone = {}
    for k = 1, used do
      if cq[k] == q then
        gone[#gone + 1] = cid[k]
      end
    end
    bulk('ZREM', KEYS[q] .. 'ready', gone, 1)
  end
else
  local back = {}
  for k = used + 1, #cid do
    back[#back + 1], back[#back + 2] = cscore[k], cid[k]
  end
  bulk('ZADD', KEYS[1] .. 'ready', back, 2)
end
if taken > 0 then
  redis.call('SET', memo, cmsgpack.pack(mine), 'PX', ARGV[3])
end
if not plain then
  local info = {}
  for j = 1, taken do
    info[j] = iq[j] .. ',' .. il[j]
  end
  out[3] = table.concat(info, ' ')
end

for q = 1, nq do
  local base = KEYS[q]
  if not paused[q] and redis.call('ZCARD', base .. 'ready') > 0 then
    wake(base, 1)
  else
    redis.call('DEL', base .. 'wake')
    if redis.call('ZCARD', base .. 'delayed') == 0 and redis.call('ZCARD', base .. 'leases') == 0 then
      redis.call('DEL', base .. 'seq')
    end
  end
  if taken == 0 then
    local first = redis.call('ZRANGE', base .. 'delayed', 0, 0, 'WITHSCORES')
    if first[2] and (out[1] == -1 or tonumber(first[2]) < tonumber(out[1])) then
      out[1] = first[2]
    end
  end
end
return out
