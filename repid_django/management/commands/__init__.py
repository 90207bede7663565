"""``runworker`` (the worker process) and ``prune`` (removes old mirror rows)."""
