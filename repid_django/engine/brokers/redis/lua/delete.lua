-- delete: KEYS[1] = queue base. Removes every key of the queue except stored results (they expire).
local base = KEYS[1]
for _, what in ipairs({ 'ready', 'delayed', 'msgs', 'pri', 'leases', 'tokens', 'lost', 'dead',
  'dmsg', 'dinfo', 'seq', 'wake' }) do
  redis.call('DEL', base .. what)
end
return 1
