-- purge_dead: KEYS[1] = queue base; ARGV = ids (none: all). Returns how many were deleted.
local base = KEYS[1]
if #ARGV == 0 then
  local count = redis.call('ZCARD', base .. 'dead')
  redis.call('DEL', base .. 'dead', base .. 'dmsg', base .. 'dinfo')
  return count
end
local count = 0
for _, id in ipairs(ARGV) do
  if redis.call('ZSCORE', base .. 'dead', id) then
    drop_dead(base, { id })
    count = count + 1
  end
end
return count
