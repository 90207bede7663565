-- peek: KEYS[1] = queue base; ARGV = job id, full ('1' or '0'). One atomic read of what is
-- known of a job (results.py, tasks_backend/results.py), '' where there is nothing: its stored
-- result; with full = '0' whether its message still waits or runs (1/0) and its dead letter's
-- info; with full = '1' its body, its lease deadline, its dead letter's body and info.
-- Writes nothing.
local base, id = KEYS[1], ARGV[1]
local result = redis.call('GET', base .. 'result:' .. id) or ''
local info = redis.call('HGET', base .. 'dinfo', id) or ''
if ARGV[2] ~= '1' then
  return { result, redis.call('HEXISTS', base .. 'msgs', id), info }
end
return {
  result,
  redis.call('HGET', base .. 'msgs', id) or '',
  redis.call('ZSCORE', base .. 'leases', id) or '',
  redis.call('HGET', base .. 'dmsg', id) or '',
  info,
}
