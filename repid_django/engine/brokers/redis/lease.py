"""The lease keeper: a daemon thread that keeps the leases of held deliveries alive.

A claimed delivery carries a lease (token + deadline) that expires ``lease_ttl`` seconds after
it was last extended. While the broker holds a delivery (claimed, not yet finished) this thread
extends its lease every ``min(lease_ttl / 3, reaper_interval)`` seconds. It runs in its own
thread with its own synchronous Redis connection, so an actor that blocks the event loop cannot
stall it: only a dead (or frozen) process loses its leases.

Every ``reaper_interval`` seconds it also runs the reaper on the queues this process consumes:
expired leases of dead workers go back to the queue (or to the dead-letter queue as
``worker_lost`` after ``max_lost`` losses), so a job held by a dead worker is offered again
within ``lease_ttl + reaper_interval`` even when every other worker is idle. (Claims reap too.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

import redis
from redis.exceptions import RedisError

from . import scripts as redis_scripts
from .keys import queue_base

log = logging.getLogger("repid_django.redis")


class LeaseKeeper:
    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        lease_ttl: float,
        reaper_interval: float,
        max_lost: int,
        dead_ttl_ms: int,
        dead_max: int,
        target: str,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._lease_ms = int(lease_ttl * 1000)
        self._interval = min(lease_ttl / 3, reaper_interval)
        self._reaper_interval = reaper_interval
        self._reap_args = [max_lost, dead_ttl_ms, dead_max]
        self._target = target
        self._held: dict[tuple[str, str], str] = {}
        self._queues: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="repid-lease-keeper", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._client.close()

    def hold(self, deliveries: Iterable[tuple[str, str, str]]) -> None:
        """Keep the leases of ``(queue, id, token)`` alive until :meth:`release`."""
        with self._lock:
            for queue, message_id, token in deliveries:
                self._held[(queue, message_id)] = token

    def release(self, keys: Iterable[tuple[str, str]]) -> None:
        with self._lock:
            for key in keys:
                self._held.pop(key, None)

    def watch(self, queues: Iterable[str]) -> None:
        """Reap ``queues`` from now on (the queues this process consumes)."""
        with self._lock:
            self._queues.update(queues)

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def _main(self) -> None:
        next_reap = time.monotonic() + self._reaper_interval
        while not self._stop.wait(self._interval):
            try:
                self.extend()
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + self._reaper_interval
                    self.reap()
            except (RedisError, OSError) as exc:
                if not self._failing:
                    log.warning(
                        "cannot extend job leases on Redis at %s (%s); retrying every %.1fs",
                        self._target,
                        exc,
                        self._interval,
                    )
                self._failing = True
            else:
                if self._failing:
                    log.warning("lease keeper reconnected to Redis at %s", self._target)
                self._failing = False

    def extend(self) -> int:
        """Extend every held lease now (one round trip); returns how many were lost."""
        with self._lock:
            held = list(self._held.items())
        if not held:
            return 0
        bases: dict[str, int] = {}
        args: list[str | int] = [self._lease_ms]
        for (queue, message_id), token in held:
            index = bases.setdefault(queue, len(bases) + 1)
            args += [index, message_id, token]
        keys = [queue_base(self._prefix, q) for q in bases]
        reply = redis_scripts.run_sync(self._client, "extend", keys, args)
        lost = [key for (key, _), ok in zip(held, reply, strict=True) if not ok]
        if lost:
            with self._lock:
                for key in lost:
                    # Only forget it if it was not claimed again meanwhile under a new token.
                    if self._held.get(key) == dict(held).get(key):
                        self._held.pop(key, None)
            log.warning("lost the lease of %d job(s) (they will run elsewhere)", len(lost))
        return len(lost)

    def reap(self) -> int:
        """Return expired leases of the watched queues (one round trip)."""
        with self._lock:
            queues = sorted(self._queues)
        if not queues:
            return 0
        keys = [queue_base(self._prefix, q) for q in queues]
        return int(
            redis_scripts.run_sync(self._client, "reap", keys, [time.time(), *self._reap_args])
        )
