-- delete: KEYS[1] = queue base. Removes every key of the queue except stored results (they
-- expire). UNLINK, not DEL: the keys leave the keyspace at once and Redis frees big ones (a
-- queue of 200,000 messages) in a background thread, so the script holds Redis for
-- microseconds whatever the queue's size, and the queue still goes all at once.
local base = KEYS[1]
local keys = {}
for _, what in ipairs({ 'ready', 'delayed', 'msgs', 'pri', 'leases', 'tokens', 'lost', 'dead',
  'dmsg', 'dinfo', 'seq', 'wake', 'ctl', 'sched', 'stop', 'bucket' }) do
  keys[#keys + 1] = base .. what
end
redis.call('UNLINK', unpack(keys))
return 1
