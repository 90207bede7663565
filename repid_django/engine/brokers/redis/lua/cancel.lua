-- cancel: KEYS[1] = queue base; ARGV[1] = id. Removes a waiting (not running) message.
local base = KEYS[1]
local id = ARGV[1]
local removed = redis.call('ZREM', base .. 'ready', id) + redis.call('ZREM', base .. 'delayed', id)
if removed > 0 then
  forget(base, id)
  return 1
end
return 0
