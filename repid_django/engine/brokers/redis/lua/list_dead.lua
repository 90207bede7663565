-- list_dead: KEYS[1] = queue base; ARGV = offset, limit. Newest first: (id, info, body) triples.
local base = KEYS[1]
local offset = tonumber(ARGV[1])
local ids = redis.call('ZREVRANGE', base .. 'dead', offset, offset + tonumber(ARGV[2]) - 1)
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', base .. 'dinfo', id) or '{}'
  out[#out + 1] = redis.call('HGET', base .. 'dmsg', id) or ''
end
return out
