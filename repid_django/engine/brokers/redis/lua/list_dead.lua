-- list_dead: KEYS[1] = queue base; ARGV = offset, limit (the caller keeps limit to a chunk:
-- admin.py). Newest first: (id, info, body) triples.
local base = KEYS[1]
local offset = tonumber(ARGV[1])
local ids = redis.call('ZREVRANGE', base .. 'dead', offset, offset + tonumber(ARGV[2]) - 1)
local infos = hmget(base .. 'dinfo', ids)
local bodies = hmget(base .. 'dmsg', ids)
local out = {}
for k, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = infos[k] or '{}'
  out[#out + 1] = bodies[k] or ''
end
return out
