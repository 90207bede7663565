-- claim: KEYS = queue bases; ARGV = now, limit, lease_ms, token, max_lost, dead_ttl_ms, dead_max,
-- alone_ok, repeat, previous token.
-- Reaps expired leases, promotes due delayed messages, then leases up to `limit` ready messages
-- (strict priority across the queues, FIFO within one).
-- A message on its last chance (max_lost > 0 and lost >= max_lost: one more expired lease buries
-- it) is only leased alone, to a claimer that holds nothing else (alone_ok = '1'): its batch ends
-- before it, and if the claimer is busy it stays where it is and the reply says so. So a job that
-- kills its worker cannot take innocent jobs to the dead-letter queue with it.
-- Control (<base>ctl, a hash, read once per queue and claim): 'paused' = a paused queue is
-- reaped and promoted but offers nothing, and wakes no one; limits (see below) on the queue
-- ('conc', 'rate') or on its actors ('c:<actor>', 'r:<actor>').
-- Returns {next_run_at|-1, last_chance_waiting (0/1), info, limited, (id, body)...}:
-- next_run_at only when nothing was leased (the next delayed message, or when a rate limit
-- gives a token again); info is '' when every leased message comes from KEYS[1] with no lost
-- lease, else "<queue index>,<lost>" per leased message, joined by spaces; limited: the indexes
-- of the queues with a concurrency limit, joined by spaces (the caller's finish wakes their
-- claimers when a slot frees).
-- Idempotent: what a claim leases is remembered for the lease time under its token (key
-- <KEYS[1]>clm:<token>, the leased ids packed); a send repeated because its reply was lost
-- (repeat = '1') gets the messages that first send leased and still holds, not a second batch.
-- The claimer's next claim names its previous token, whose memo is then dropped.
local memo = KEYS[1] .. 'clm:' .. ARGV[4]
if ARGV[9] == '1' then
  local seen = redis.call('GET', memo)
  if seen then -- kept: this answer may be lost too (the claimer's next claim drops it)
    local got = cmsgpack.unpack(seen)
    local out, info = { -1, 0, '', '' }, {}
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
-- Limits. <base>ctl fields: 'conc' = at most that many of the queue's jobs run at once (all
-- workers); 'rate' = "<count> <window ms>": at most count starts per window (a token bucket:
-- a burst of count, then count per window); 'c:<actor>' and 'r:<actor>' = the same for one
-- actor, 'r:<actor>' with a third word naming an argument whose value gets a bucket of its own.
-- A job over a limit stays in `ready`, in its place; the claim leases the jobs behind it that
-- are allowed. Running jobs of a limited actor are counted in <base>run:<actor> (id -> claim
-- time), pruned here of ids no longer running (finished, or reaped: a dead worker's slot comes
-- back with its lease). Buckets live in <base>bucket[:<actor>[:<value>]] {t = tokens, ts}.
local function read_ctl(base)
  local flat = redis.call('HGETALL', base .. 'ctl')
  if #flat == 0 then
    return nil
  end
  local ctl = { c = {}, r = {}, any = false }
  for i = 1, #flat, 2 do
    local k, v = flat[i], flat[i + 1]
    if k == 'paused' then
      ctl.paused = true
    elseif k == 'conc' then
      ctl.conc, ctl.any = tonumber(v), true
    elseif k == 'rate' then
      local n, w = string.match(v, '^(%d+) (%d+)')
      ctl.rate, ctl.any = { tonumber(n), tonumber(w) }, true
    elseif string.sub(k, 1, 2) == 'c:' then
      ctl.c[string.sub(k, 3)], ctl.any, ctl.actors = tonumber(v), true, true
    elseif string.sub(k, 1, 2) == 'r:' then
      local n, w, key = string.match(v, '^(%d+) (%d+) ?(.*)$')
      ctl.r[string.sub(k, 3)] = { tonumber(n), tonumber(w), key ~= '' and key or nil }
      ctl.any, ctl.actors = true, true
    end
  end
  return ctl
end

local function actor_of(body)
  local actor = string.match(body, '"actor"%s*:%s*"([^"\\]*)"')
  if actor then
    return actor
  end
  local ok, data = pcall(cjson.decode, body)
  return ok and type(data) == 'table' and type(data.actor) == 'string' and data.actor or ''
end

local function running(base, actor)
  local key = base .. 'run:' .. actor
  local ids = redis.call('ZRANGE', key, 0, -1)
  if #ids == 0 then
    return 0
  end
  local held = hmget(base .. 'tokens', ids)
  local gone = {}
  for j = 1, #ids do
    if not held[j] then
      gone[#gone + 1] = ids[j]
    end
  end
  bulk('ZREM', key, gone, 1)
  return #ids - #gone
end

local buckets = {} -- key -> { tokens now (refilled), count, window ms }
local function bucket(key, n, w, tnow)
  local b = buckets[key]
  if not b then
    local got = redis.call('HMGET', key, 't', 'ts')
    local t, ts = tonumber(got[1]), tonumber(got[2])
    local tokens = n
    if t and ts then
      tokens = math.min(n, t + (tnow - ts) * n / w)
    end
    b = { tokens, n, w, tokens }
    buckets[key] = b
  end
  return b
end

-- The ready head of a limited queue that may start now, in order (at most `want` of the first
-- want + 200 ready): a flat {id, score, ...} list, what each one costs (its actor when that
-- actor's concurrency is limited, the buckets it draws from), whether a job was held back, and
-- in how many ms a rate limit gives a token again.
local function allowed(base, ctl, want, tnow)
  local flat = redis.call('ZRANGE', base .. 'ready', 0, want + 199, 'WITHSCORES')
  local ids = {}
  for k = 1, #flat / 2 do
    ids[k] = flat[2 * k - 1]
  end
  local bodies = ctl.actors and #ids > 0 and hmget(base .. 'msgs', ids) or {}
  local picked, cost, blocked, wait = {}, {}, false, nil
  local counts, qcount = {}, ctl.conc and redis.call('ZCARD', base .. 'leases')
  for k = 1, #ids do
    if #picked >= 2 * want then
      break
    end
    if qcount and qcount >= ctl.conc then
      blocked = true
      break
    end
    local id, ok, draws, actor = ids[k], true, {}, nil
    local body = bodies[k]
    if ctl.actors and body then
      actor = actor_of(body)
      local cap = ctl.c[actor]
      if cap then
        counts[actor] = counts[actor] or running(base, actor)
        ok = counts[actor] < cap
      end
      local r = ctl.r[actor]
      if ok and r then
        local key = base .. 'bucket:' .. actor
        if r[3] then
          local parsed, data = pcall(cjson.decode, body)
          local args = parsed and type(data) == 'table' and data.args
          local value = type(args) == 'table' and args[r[3]]
          key = key .. ':' .. (value ~= nil and tostring(value) or '')
        end
        draws[#draws + 1] = { key, r[1], r[2] }
      end
    end
    if ok and ctl.rate then
      draws[#draws + 1] = { base .. 'bucket', ctl.rate[1], ctl.rate[2] }
    end
    for _, d in ipairs(draws) do
      local b = bucket(d[1], d[2], d[3], tnow)
      if b[1] < 1 then
        ok = false
        local ms = math.ceil((1 - b[1]) * b[3] / b[2])
        wait = wait and math.min(wait, ms) or ms
      end
    end
    if ok then
      for _, d in ipairs(draws) do
        buckets[d[1]][1] = buckets[d[1]][1] - 1
      end
      if actor and ctl.c[actor] then
        counts[actor] = counts[actor] + 1
      end
      if qcount then
        qcount = qcount + 1
      end
      picked[#picked + 1], picked[#picked + 2] = id, flat[2 * k]
      cost[id] = { actor and ctl.c[actor] and actor, draws }
    else
      blocked = true
    end
  end
  return picked, cost, blocked, wait
end

local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local token = ARGV[4]
local max_lost, ttl_ms, max = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local alone_ok = ARGV[8] == '1'
local tnow = server_ms()
local deadline = string.format('%.0f', tnow + tonumber(ARGV[3])) -- formatted once, not per job
local nq = NQ
local paused, ctls = {}, {} -- a paused queue offers nothing; it still reaps and promotes
local limited = false
for q = 1, nq do
  reap(KEYS[q], tnow, now, max_lost, ttl_ms, max, 200)
  promote(KEYS[q], now, 1000)
  local ctl = read_ctl(KEYS[q])
  paused[q] = ctl and ctl.paused or false
  if ctl and ctl.any and not paused[q] then
    ctls[q], limited = ctl, true
  end
end

-- The candidates in serving order: ids, ready scores and (several queues) queue indexes. One
-- queue: popped at once (what is not leased goes back); several: merged from each queue's head,
-- removed once leased.
local cid, cscore, cq = {}, {}, nil
local costs, blocked, rate_wait = {}, {}, nil
if nq == 1 and not limited then
  local popped = paused[1] and {} or redis.call('ZPOPMIN', KEYS[1] .. 'ready', limit)
  for k = 1, #popped / 2 do
    cid[k], cscore[k] = popped[2 * k - 1], popped[2 * k]
  end
else
  cq = {}
  local heads, at = {}, {}
  for q = 1, nq do
    if ctls[q] then
      local wait
      heads[q], costs[q], blocked[q], wait = allowed(KEYS[q], ctls[q], limit, tnow)
      if wait then
        rate_wait = rate_wait and math.min(rate_wait, wait) or wait
      end
    else
      heads[q] = paused[q] and {}
        or redis.call('ZRANGE', KEYS[q] .. 'ready', 0, limit - 1, 'WITHSCORES')
    end
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

local out = { -1, 0, '', '' }
local iq, il, plain = {}, {}, nq == 1
local last_at = max_lost > 0 and max_lost or math.huge
local held = token .. ' ' -- a tokens entry: "<token> <ready score>"
local tokens, leases, taken, used = {}, {}, 0, 0
local mine = {} -- (queue index, id) per leased message: the memo
local spent = {} -- bucket key -> tokens taken by this claim
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
    out[2 * taken + 3], out[2 * taken + 4] = id, bodies[k]
    mine[2 * taken - 1], mine[2 * taken] = q, id
    local c = costs[q] and costs[q][id]
    if c then -- a limited queue's job starts: its slot and its tokens are taken
      if c[1] then
        redis.call('ZADD', KEYS[q] .. 'run:' .. c[1], tnow, id)
        redis.call('PEXPIRE', KEYS[q] .. 'run:' .. c[1], 86400000)
      end
      for _, d in ipairs(c[2]) do
        spent[d[1]] = (spent[d[1]] or 0) + 1
      end
    end
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

for key, n in pairs(spent) do
  local b = buckets[key]
  redis.call('HSET', key, 't', b[4] - n, 'ts', tnow)
  redis.call('PEXPIRE', key, 2 * b[3])
end

-- Wake the next claimer when jobs that may start are left (not for a paused queue, nor for
-- jobs held back by a limit: a finish or the next token wakes them, so nobody spins).
local conc = {}
for q = 1, nq do
  local base = KEYS[q]
  local ready = redis.call('ZCARD', base .. 'ready')
  if ready > 0 and not paused[q] and not blocked[q] then
    wake(base, 1)
  else
    redis.call('DEL', base .. 'wake')
    if ready == 0 and redis.call('ZCARD', base .. 'delayed') == 0
      and redis.call('ZCARD', base .. 'leases') == 0 then
      redis.call('DEL', base .. 'seq')
    end
  end
  if taken == 0 then
    local first = redis.call('ZRANGE', base .. 'delayed', 0, 0, 'WITHSCORES')
    if first[2] and (out[1] == -1 or tonumber(first[2]) < tonumber(out[1])) then
      out[1] = first[2]
    end
  end
  local ctl = ctls[q]
  if ctl and (ctl.conc or next(ctl.c)) then
    conc[#conc + 1] = q
  end
end
if taken == 0 and rate_wait then
  local at = now + rate_wait / 1000
  if out[1] == -1 or at < tonumber(out[1]) then
    out[1] = string.format('%.3f', at) -- a string: a Lua number would reach the caller truncated
  end
end
out[4] = table.concat(conc, ' ')
return out
