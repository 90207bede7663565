-- list: KEYS[1] = queue base; ARGV = 'ready'|'delayed', offset, limit (the caller keeps limit
-- to a chunk: admin.py). Returns how many ids the range held, then (id, body) pairs (an id
-- without a body is left out) in serving order (ready) or run_at order (delayed).
local base = KEYS[1]
local offset = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', base .. ARGV[1], offset, offset + tonumber(ARGV[3]) - 1)
local bodies = hmget(base .. 'msgs', ids)
local out = { #ids }
for k, id in ipairs(ids) do
  if bodies[k] then
    out[#out + 1] = id
    out[#out + 1] = bodies[k]
  end
end
return out
