-- flush: KEYS[1] = queue base; ARGV = limit, phase, cursor, bound.
-- One chunk of a flush (admin.py runs them until done): removes up to `limit` waiting messages,
-- each with its body and every other entry of it in this one script, so none is ever
-- half-removed and Redis is held for one chunk only. Phase 'd': the delayed messages in run_at
-- order, from `cursor` up to `bound` (the latest run_at when the phase began); then phase 'r':
-- the ready ones in serving order from `cursor`, only those whose FIFO sequence is at most
-- `bound` (the queue's sequence when the phase began; promoted delayed ones are under it). A
-- message written meanwhile may go or stay: ready ones past `bound` are passed over (a jump to
-- the next priority band), so however fast producers write, the flush ends; delayed ones only
-- prolong it when their run_at falls between the cursor and the bound.
-- First call: limit, 'd', '', ''; then the state the previous call returned.
-- Returns {removed, phase ('' when done), cursor, bound}.
local base = KEYS[1]
local limit = tonumber(ARGV[1])
local phase, cursor, bound = ARGV[2], ARGV[3], ARGV[4]
local ids = {}

if phase == 'd' then
  local delayed = base .. 'delayed'
  if bound == '' then
    bound = redis.call('ZRANGE', delayed, -1, -1, 'WITHSCORES')[2] or '-inf'
  end
  local got = redis.call('ZRANGEBYSCORE', delayed, cursor == '' and '-inf' or cursor, bound,
    'WITHSCORES', 'LIMIT', 0, limit)
  for k = 1, #got, 2 do
    ids[#ids + 1] = got[k]
  end
  bulk('ZREM', delayed, ids, 1)
  if #ids < limit then
    phase, cursor, bound = 'r', '', ''
  else
    cursor = got[#got]
  end
end

if phase == 'r' then
  local ready = base .. 'ready'
  if bound == '' then
    bound = redis.call('GET', base .. 'seq') or 'all' -- 'all': no sequence (raw writes), no cut
  end
  local cut = tonumber(bound)
  local from = cursor == '' and '-inf' or cursor
  while #ids < limit do
    local want = limit - #ids
    local got = redis.call('ZRANGEBYSCORE', ready, from, '+inf', 'WITHSCORES', 'LIMIT', 0, want)
    local taken, jumped = {}, false
    for k = 1, #got, 2 do
      local score = tonumber(got[k + 1])
      local seq = score % PRI_SPAN -- exact: scores are integers under 2^53, PRI_SPAN is 2^40
      if cut and seq > cut then
        -- Enqueued after the phase began, and so is the rest of its priority band: skip it.
        from = string.format('%.17g', score - seq + PRI_SPAN)
        jumped = true
        break
      end
      taken[#taken + 1], ids[#ids + 1], from = got[k], got[k], got[k + 1]
    end
    bulk('ZREM', ready, taken, 1)
    if not jumped and #got < 2 * want then
      phase = ''
      break
    end
  end
  cursor = from
end

if #ids > 0 then
  bulk('HDEL', base .. 'msgs', ids, 1)
  bulk('HDEL', base .. 'pri', ids, 1)
  bulk('HDEL', base .. 'lost', ids, 1)
  -- A waiting message holds no lease; these are for parity with `forget` (common.lua).
  bulk('HDEL', base .. 'tokens', ids, 1)
  bulk('ZREM', base .. 'leases', ids, 1)
end
if phase == '' and redis.call('ZCARD', base .. 'ready') == 0 then
  redis.call('DEL', base .. 'wake')
  if redis.call('ZCARD', base .. 'delayed') == 0 and redis.call('ZCARD', base .. 'leases') == 0 then
    redis.call('DEL', base .. 'seq')
  end
end
tidy(base)
return { #ids, phase, cursor, bound }
