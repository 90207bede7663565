"""The lease keeper: a daemon thread that keeps the leases of held deliveries alive.

A claimed delivery carries a lease (token + deadline) that expires ``lease_ttl`` seconds after
it was last extended. While the broker holds a delivery (claimed, and until its outcome is
applied) this thread extends its lease every ``min(lease_ttl / 3, reaper_interval)`` seconds.
It runs in its own thread with its own synchronous Redis connection (a lean one, :mod:`.wire`),
so an actor that blocks the event loop for a while cannot stall it: only a dead (or frozen)
process loses its leases.

A loop blocked for good must not keep its jobs for ever, though: every event loop that claims
has a :class:`Heartbeat` (a timer on that loop), and a lease is extended only while its loop
has run within the job's own timeout plus ``hang_grace`` seconds. A healthy loop enforces the
timeout itself, so this bound only ever takes the jobs of a hung loop: they then expire, run
elsewhere, and the hung worker's late outcome is refused (the finish is fenced by the token).

A delivery stays held while its outcome is being written (``finishing``), including while that
write is retried through a Redis outage: a completed job keeps its lease until the outcome is
applied, so a blip shorter than the lease never makes it run again.

Every ``reaper_interval`` seconds it also runs the reaper on the queues this process consumes:
expired leases of dead workers go back to the queue (or to the dead-letter queue as
``worker_lost`` after ``max_lost`` losses), so a job held by a dead worker is offered again
within ``lease_ttl + reaper_interval`` even when every other worker is idle. (Claims reap too.)
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError

from ..base import Delivery
from . import scripts as redis_scripts
from .cluster import ClusterSyncWire
from .codec import text
from .keys import queue_base
from .scripts import Script
from .wire import SyncWire

log = logging.getLogger("repid_django.redis")

Key = tuple[str, str]
"""A held delivery: (queue, message id)."""
STOP_POLL = 0.5
"""Seconds between two looks for stop requests (cancel) while deliveries are held."""


class Heartbeat:
    """When an event loop last ran (``time.monotonic()``), kept by a timer on that loop.

    The timer re-arms itself every :attr:`INTERVAL` seconds; a blocked loop runs no timer, so
    :attr:`at` stops moving. A closed loop drops the timer without a trace, and nothing here
    keeps a closed loop alive.
    """

    INTERVAL = 0.5

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.at = time.monotonic()
        # The timer is the loop's alone: a heartbeat that held it would hold the loop too, and
        # the broker keeps heartbeats by (weakly referenced) loop.
        loop.call_later(self.INTERVAL, self._tick)

    def _tick(self) -> None:
        self.at = time.monotonic()
        asyncio.get_running_loop().call_later(self.INTERVAL, self._tick)


@dataclass(slots=True)
class _Held:
    token: str
    budget: float
    """Seconds the owning loop may stay silent before this lease is let go."""
    beat: Heartbeat
    finishing: bool = False
    let_go: bool = False
    stopping: bool = False


class LeaseKeeper:
    def __init__(
        self,
        wire: SyncWire | ClusterSyncWire,
        *,
        prefix: str,
        lease_ttl: float,
        reaper_interval: float,
        max_lost: int,
        dead_ttl_ms: int,
        dead_max: int,
        target: str,
        hang_grace: float = 30.0,
        groups: Callable[[list[str]], list[list[str]]] = lambda queues: [queues],
        declare: Callable[[Script, list[str]], list[str]] = lambda script, bases: bases,
    ) -> None:
        self._wire = wire
        self._groups = groups  # one script call per group (a Cluster's slot)
        self._declare = declare
        self._prefix = prefix
        self._lease_ms = int(lease_ttl * 1000)
        self._interval = min(lease_ttl / 3, reaper_interval)
        self._reaper_interval = reaper_interval
        self._reap_args = [max_lost, dead_ttl_ms, dead_max]
        self._target = target
        self._hang_grace = hang_grace
        self._held: dict[Key, _Held] = {}
        self._queues: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="repid-lease-keeper", daemon=True)
        self._failing = False
        self._on_stop: list[Callable[[str, str], None]] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        # The thread's own socket closes with its thread-local data once it has ended.

    def hold(self, deliveries: Iterable[Delivery], beat: Heartbeat) -> None:
        """Keep the leases of ``deliveries`` alive (while ``beat``'s loop runs) until
        :meth:`release`."""
        grace = self._hang_grace
        with self._lock:
            for d in deliveries:
                key = (d.message.queue, d.message.id)
                self._held[key] = _Held(d.token, d.message.timeout + grace, beat)

    def started(self, delivery: Delivery, timeout: float) -> None:
        """``delivery`` runs now, stopped after ``timeout`` seconds by a healthy loop."""
        with self._lock:
            held = self._held.get((delivery.message.queue, delivery.message.id))
            if held is not None and held.token == delivery.token:
                held.budget = timeout + self._hang_grace

    def finishing(self, deliveries: Iterable[Delivery]) -> None:
        """Their outcomes are on their way: still extend, but a lease found gone is no news
        (the finish removed it)."""
        with self._lock:
            for d in deliveries:
                held = self._held.get((d.message.queue, d.message.id))
                if held is not None and held.token == d.token:
                    held.finishing = True

    def release(self, deliveries: Iterable[Delivery]) -> None:
        """Stop extending (the outcomes are applied or refused)."""
        with self._lock:
            for d in deliveries:
                key = (d.message.queue, d.message.id)
                held = self._held.get(key)
                if held is not None and held.token == d.token:
                    del self._held[key]

    def watch_stops(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(queue, id)`` (from this thread) when a held delivery is asked to
        stop; polled every :data:`STOP_POLL` seconds while something is held."""
        self._on_stop.append(callback)

    def watch(self, queues: Iterable[str]) -> None:
        """Reap ``queues`` from now on (the queues this process consumes)."""
        with self._lock:
            self._queues.update(queues)

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def _main(self) -> None:
        tick = min(self._interval, STOP_POLL)
        next_extend = time.monotonic() + self._interval
        next_reap = time.monotonic() + self._reaper_interval
        while not self._stop.wait(tick):
            try:
                if self._on_stop:
                    self.poll_stops()
                now = time.monotonic()
                if now >= next_extend:
                    next_extend = now + self._interval
                    self.extend()
                if now >= next_reap:
                    next_reap = now + self._reaper_interval
                    self.reap()
            except (RedisError, OSError) as exc:
                # Again at the next tick, not an interval later: a blip must not cost a lease.
                now = time.monotonic()
                next_extend, next_reap = min(next_extend, now), min(next_reap, now)
                if not self._failing:
                    log.warning(
                        "cannot extend job leases on Redis at %s (%s); retrying every %.1fs",
                        self._target,
                        exc,
                        tick,
                    )
                self._failing = True
            else:
                if self._failing:
                    log.warning("lease keeper reconnected to Redis at %s", self._target)
                self._failing = False

    def poll_stops(self) -> int:
        """Ask Redis which held deliveries are asked to stop (one round trip, only while
        something is held); tells the callbacks of each once. Returns how many."""
        with self._lock:
            held = [key for key, h in self._held.items() if not h.stopping and not h.finishing]
        if not held:
            return 0
        asked = []
        for part in self._split(held, lambda key: key[0]):
            bases: dict[str, int] = {}
            args: list[str | int] = []
            for queue, message_id in part:
                args += [bases.setdefault(queue, len(bases) + 1), message_id]
            queues = list(bases)
            for item in self._run("stops", queues, args):
                index, _, message_id = text(item).partition(" ")
                asked.append((queues[int(index) - 1], message_id))
        with self._lock:
            for key in asked:
                if key in self._held:
                    self._held[key].stopping = True
        for queue, message_id in asked:
            for callback in self._on_stop:
                try:
                    callback(queue, message_id)
                except Exception:
                    log.exception("a stop callback failed for job %s", message_id)
        return len(asked)

    def _to_extend(self) -> list[tuple[Key, str]]:
        """The held leases whose loop ran recently enough; logs the ones let go."""
        now = time.monotonic()
        out: list[tuple[Key, str]] = []
        with self._lock:
            for key, held in self._held.items():
                silent = now - held.beat.at
                if silent <= held.budget:
                    held.let_go = False
                    out.append((key, held.token))
                elif not held.let_go:
                    held.let_go = True
                    log.error(
                        "job %s (queue %r): the event loop running it has not run for %.0fs, "
                        "longer than the job's timeout plus hang_grace (%.0fs); its lease is "
                        "no longer extended, so it runs on another worker, and this worker's "
                        "late outcome for it will be refused",
                        key[1],
                        key[0],
                        silent,
                        held.budget,
                    )
        return out

    def extend(self) -> int:
        """Extend the held leases now (one round trip); returns how many were lost."""
        held = self._to_extend()
        if not held:
            return 0
        answered: list[tuple[tuple[Key, str], Any]] = []
        for part in self._split(held, lambda item: item[0][0]):
            bases: dict[str, int] = {}
            args: list[str | int] = [self._lease_ms]
            for (queue, message_id), token in part:
                index = bases.setdefault(queue, len(bases) + 1)
                args += [index, message_id, token]
            answered += zip(part, self._run("extend", list(bases), args), strict=True)
        lost = 0
        with self._lock:
            for (key, token), ok in answered:
                entry = self._held.get(key)
                # Only forget it if it was not claimed again meanwhile under a new token.
                if ok or entry is None or entry.token != token:
                    continue
                del self._held[key]
                if not entry.finishing:  # else: its finish removed the lease (no news)
                    lost += 1
        if lost:
            log.warning("lost the lease of %d job(s) (they will run elsewhere)", lost)
        return lost

    def reap(self) -> int:
        """Return expired leases of the watched queues (one round trip)."""
        with self._lock:
            queues = sorted(self._queues)
        if not queues:
            return 0
        args = [time.time(), *self._reap_args]
        return sum(int(self._run("reap", group, args)) for group in self._groups(queues))

    def _run(self, name: str, queues: list[str], args: list[Any]) -> Any:
        """Script ``name`` over ``queues`` (of one slot group), on this thread's connection.
        A connection that broke (reset, closed by the server) is opened again and the call
        repeated at once, twice at most: these scripts are idempotent, and a lease should not
        wait for the next round because of one bad socket (a timeout waits for that round)."""
        bases = [queue_base(self._prefix, q) for q in queues]
        script = redis_scripts.script(name)
        keys = self._declare(script, bases)
        for _ in range(2):
            try:
                return self._wire.run(script, keys, args)
            except RedisConnectionError as exc:
                if isinstance(exc, AuthenticationError):
                    raise
        return self._wire.run(script, keys, args)

    def _split[T](self, items: list[T], queue: Callable[[T], str]) -> list[list[T]]:
        """``items`` (held deliveries) by the slot group of their ``queue``."""
        groups = self._groups(list(dict.fromkeys(queue(item) for item in items)))
        if len(groups) == 1:
            return [items]
        where = {q: i for i, group in enumerate(groups) for q in group}
        parts: list[list[T]] = [[] for _ in groups]
        for item in items:
            parts[where[queue(item)]].append(item)
        return parts
