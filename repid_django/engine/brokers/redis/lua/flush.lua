-- flush: KEYS[1] = queue base. Removes every waiting (ready and delayed) message; returns how many.
local base = KEYS[1]
local count = 0
for _, what in ipairs({ 'ready', 'delayed' }) do
  local ids = redis.call('ZRANGE', base .. what, 0, -1)
  for _, id in ipairs(ids) do
    forget(base, id)
  end
  count = count + #ids
  redis.call('DEL', base .. what)
end
redis.call('DEL', base .. 'wake')
if redis.call('ZCARD', base .. 'leases') == 0 then
  redis.call('DEL', base .. 'seq')
end
return count
