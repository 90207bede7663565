"""The Redis broker: at-least-once delivery with leases, fencing and dead letters.

``RedisMessageBroker(url)`` implements :class:`MessageBroker` and :class:`ResultBroker` (results
are written by the same script that completes the job). ``url=None`` uses the project's
embedded Redis (:mod:`repid_django.engine.brokers.embedded`). Works on Redis >= 6.2 (no 7.x-only
commands) and Valkey.

How it works (key layout in :mod:`.redis_keys`, scripts in ``lua/``):

* Every state change is one Lua script, sent with EVALSHA (:mod:`.redis_scripts`).
* ``enqueue``: one script call per queue in the batch, all in one round trip. Ready messages go
  to a zset scored by priority then FIFO sequence; deferred ones to a zset by ``run_at``.
* ``claim``: one script reaps expired leases, promotes due delayed messages and leases up to
  ``limit`` ready ones (token + deadline), in one round trip. Bodies are decoded in Python
  (JSON only); undecodable, too large or expired ones are dead-lettered by a follow-up script
  and never returned. With nothing ready, the claim blocks (BLPOP, on its own connection) on the
  queues' wake-up lists, which every enqueue pushes to, for at most ``min(wait, time until the
  next delayed message, reaper_interval)``: no sleep-polling.
* Leases: the :class:`~.redis_lease.LeaseKeeper` thread extends held leases and reaps; a job of
  a dead worker runs again within ``lease_ttl + reaper_interval``; after ``max_lost`` expired
  leases it is dead-lettered as ``worker_lost``.
* Last chance: a process that dies loses every lease it holds (running or prefetched), so the
  jobs claimed alongside a job that kills its worker lose a lease too. A job with ``max_lost``
  expired leases (one more buries it) is therefore only leased alone, to a broker that holds no
  other lease, and that broker claims nothing else until it is finished; a busy claimer passes
  over it (its batch ends there), lets what it holds finish, then claims it. So only a job
  whose own last delivery died while it was alone ends as ``worker_lost``. Normal jobs pay
  nothing (no extra command or round trip); a claimer only waits while such a job exists.
* ``finish``: one script applies a batch of outcomes (ack, retry, dead, reject), each fenced by
  its lease token, with the result written atomically (key ``<prefix>:{<queue>}:result:<id>``,
  TTL ``message.result_ttl`` or ``result_ttl``). It is idempotent: the script keeps its reply
  for ``finish_memo_ttl`` seconds (default ``finish_retry_time + 2 * max_backoff``) in one small
  key per call (``<prefix>:{<queue>}:fin:<digest of the ids, tokens and kinds>``), and a call
  sent again because its reply was lost (connection dropped, timeout, Redis restarted) gets the
  first answer, not a false "lease lost" (a new ``finish()`` of an already finished delivery
  still gets ``False``). Cost: a GET and a SET inside the same script, no
  extra round trip. A repeat later than that (Redis unreachable for longer) can still report
  "lease lost" for an outcome the first attempt applied.
* Dead letters keep the reason, the error and the stored body; at most ``dead_letter_max`` per
  queue, expiring after ``dead_letter_ttl`` seconds.
* Redis Cluster: each queue's keys share one slot. A claim or finish that spans several queues
  runs one script over all their keys, so on a Cluster those queues must share a slot (or use
  one queue per worker); a standalone Redis has no such limit.
* Redis lost while running: claim and finish retry with back-off (logged) until Redis is back;
  finish is fenced and enqueue refuses duplicate ids, so repeating them is safe. Enqueue gives
  up after ``enqueue_retry_time`` seconds with a ``ConnectionError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis
import redis.asyncio as aredis
from redis.exceptions import RedisError

from ...message import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Message,
    encode_checked,
)
from ..base import (
    BrokerCounters,
    Delivery,
    MessageBroker,
    Outcome,
    OutcomeKind,
    QueueStats,
    ResultBroker,
)
from . import scripts as redis_scripts
from .admin import RedisAdminMixin
from .codec import call_digest, decode_claimed, fmt_time, outcome_args, text
from .keys import (
    QUEUE_PARTS,
    queue_base,
    registry_key,
    wake_key,
)
from .lease import LeaseKeeper
from .scripts import RETRYABLE, retrying
from .url import RedisOptions, redact_url

__all__ = ["RedisMessageBroker", "redact_url"]

log = logging.getLogger("repid_django.redis")
DAY = 86_400.0


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"RedisMessageBroker: {name} must be a positive number, got {value!r}")
    return float(value)


class RedisMessageBroker(RedisAdminMixin, MessageBroker, ResultBroker):
    """Message and result broker over Redis; see the module docstring."""

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = "repid",
        lease_ttl: float = 30.0,
        reaper_interval: float = 5.0,
        max_lost: int = 3,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        result_ttl: float = DAY,
        dead_letter_ttl: float = 7 * DAY,
        dead_letter_max: int = 10_000,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_cert_reqs: str = "required",
        ssl_check_hostname: bool = True,
        socket_timeout: float = 10.0,
        socket_connect_timeout: float = 5.0,
        embedded_dir: str | os.PathLike[str] | None = None,
        enqueue_retry_time: float = 10.0,
        finish_retry_time: float = 60.0,
        finish_memo_ttl: float | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        if not isinstance(prefix, str) or not prefix or any(c in prefix for c in "{} "):
            raise ValueError(f"RedisMessageBroker: prefix must be a non-empty word, got {prefix!r}")
        self.prefix = prefix
        self.lease_ttl = _positive("lease_ttl", lease_ttl)
        self.reaper_interval = _positive("reaper_interval", reaper_interval)
        if isinstance(max_lost, bool) or not isinstance(max_lost, int) or max_lost < 0:
            raise ValueError(f"RedisMessageBroker: max_lost must be an int >= 0, got {max_lost!r}")
        self.max_lost = max_lost
        self.max_message_size = int(_positive("max_message_size", max_message_size))
        self.result_ttl = _positive("result_ttl", result_ttl)
        self.dead_letter_ttl = _positive("dead_letter_ttl", dead_letter_ttl)
        self.dead_letter_max = int(_positive("dead_letter_max", dead_letter_max))
        self.enqueue_retry_time = _positive("enqueue_retry_time", enqueue_retry_time)
        self.finish_retry_time = _positive("finish_retry_time", finish_retry_time)
        if finish_memo_ttl is None:
            finish_memo_ttl = self.finish_retry_time + 2 * max_backoff
        self.finish_memo_ttl = _positive("finish_memo_ttl", finish_memo_ttl)
        self.max_backoff = _positive("max_backoff", max_backoff)
        self._embedded_dir = embedded_dir
        self._options: RedisOptions | None = None
        if url is not None:
            self._options = RedisOptions(
                url,
                ssl_ca_certs,
                ssl_certfile,
                ssl_keyfile,
                ssl_cert_reqs,
                ssl_check_hostname,
                _positive("socket_timeout", socket_timeout),
                _positive("socket_connect_timeout", socket_connect_timeout),
            )
            self._options.validate()
        self._client: aredis.Redis | None = None
        self._blocking: aredis.Redis | None = None
        self._keeper: LeaseKeeper | None = None
        self._registered: set[str] = set()
        self._interrupts = 0
        self._waiters: set[asyncio.Future[None]] = set()
        self._idle_waiters: set[asyncio.Future[None]] = set()
        self._alone_pending = False
        self._counters = BrokerCounters()

    def __repr__(self) -> str:
        return f"RedisMessageBroker(url={self.target!r}, prefix={self.prefix!r})"

    @property
    def target(self) -> str:
        """The Redis URL with its password redacted (``"embedded"`` before connect)."""
        return self._options.redacted if self._options else "embedded"

    @property
    def url(self) -> str | None:
        """The URL in use (with its password): for building clients, never for display."""
        return self._options.url if self._options else None

    @property
    def client(self) -> aredis.Redis:
        if self._client is None:
            raise RuntimeError("the Redis broker is not connected: call connect() first")
        return self._client

    @property
    def keeper(self) -> LeaseKeeper:
        if self._keeper is None:
            raise RuntimeError("the Redis broker is not connected: call connect() first")
        return self._keeper

    # connection
    async def connect(self) -> None:
        if self._client is not None:
            return
        if self._options is None:
            from ..embedded import ensure_embedded_redis

            base = self._embedded_dir or os.getcwd()
            self._options = RedisOptions(await asyncio.to_thread(ensure_embedded_redis, base))
        options = self._options
        client = aredis.Redis.from_url(options.url, **options.client_kwargs())
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise ConnectionError(
                f"cannot connect to Redis at {options.redacted}: {exc}. Check that Redis is "
                "running and reachable there, or fix the broker URL (REPID_BROKER_URL)."
            ) from None
        self._client = client
        self._blocking = aredis.Redis.from_url(options.url, **options.client_kwargs(blocking=True))
        self._keeper = LeaseKeeper(
            redis.Redis.from_url(options.url, **options.client_kwargs()),
            prefix=self.prefix,
            lease_ttl=self.lease_ttl,
            reaper_interval=self.reaper_interval,
            max_lost=self.max_lost,
            dead_ttl_ms=self._dead_ttl_ms,
            dead_max=self.dead_letter_max,
            target=options.redacted,
        )
        self._keeper.start()

    async def disconnect(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            await asyncio.to_thread(keeper.stop)
        for client in (self._client, self._blocking):
            if client is not None:
                await client.aclose()
        self._client = self._blocking = None

    @property
    def _dead_ttl_ms(self) -> int:
        return int(self.dead_letter_ttl * 1000)

    async def _retry[T](
        self, what: str, call: Callable[[], Awaitable[T]], give_up: float | None = None
    ) -> T:
        return await retrying(what, call, self.target, self.max_backoff, give_up)

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await redis_scripts.run(self.client, name, keys, args)

    def _call(self, name: str, keys: list[str], args: list[Any]) -> Callable[[], Awaitable[Any]]:
        return lambda: self._script(name, keys, args)

    def _base(self, queue: str) -> str:
        return queue_base(self.prefix, queue)

    # queues
    async def declare_queue(self, name: str) -> None:
        await self.client.sadd(registry_key(self.prefix), name)
        self._registered.add(name)

    async def flush_queue(self, name: str) -> int:
        return int(await self._script("flush", [self._base(name)], []))

    async def delete_queue(self, name: str) -> None:
        await self._script("delete", [self._base(name)], [])
        await self.client.srem(registry_key(self.prefix), name)
        self._registered.discard(name)

    async def list_queues(self) -> list[str]:
        names = await self.client.smembers(registry_key(self.prefix))
        return sorted(text(n) for n in names)

    async def queue_stats(self, name: str) -> QueueStats:
        base = self._base(name)
        async with self.client.pipeline(transaction=False) as pipe:
            for part in QUEUE_PARTS:
                pipe.zcard(base + part)
            ready, delayed, running, dead = await pipe.execute()
        return QueueStats(name, ready=ready, delayed=delayed, running=running, dead=dead)

    # messages
    async def enqueue(self, messages: Sequence[Message]) -> list[bool]:
        if not messages:
            return []
        now = time.time()
        groups: dict[str, tuple[list[int], list[Any]]] = {}
        for index, message in enumerate(messages):
            body = encode_checked(message, self.max_message_size)
            positions, args = groups.setdefault(message.queue, ([], [now]))
            positions.append(index)
            args += [message.id, message.priority, fmt_time(message.run_at), body]
        new_queues = [q for q in groups if q not in self._registered]
        replies = await self._retry(
            "enqueue", lambda: self._enqueue_groups(groups, new_queues), self.enqueue_retry_time
        )
        self._registered.update(new_queues)
        written = [False] * len(messages)
        for (positions, _), reply in zip(groups.values(), replies, strict=True):
            # One byte per message: b"1" written, b"0" already there (see lua/enqueue.lua).
            for position, flag in zip(positions, bytes(reply), strict=True):
                written[position] = flag == 49
        self._counters.enqueued += sum(written)
        return written

    async def _enqueue_groups(
        self, groups: dict[str, tuple[list[int], list[Any]]], new_queues: list[str]
    ) -> list[bytes]:
        if len(groups) == 1 and not new_queues:
            ((queue, (_, args)),) = groups.items()
            return [await self._script("enqueue", [self._base(queue)], args)]
        calls = [([self._base(queue)], args) for queue, (_, args) in groups.items()]
        register = (registry_key(self.prefix), new_queues)
        return await redis_scripts.run_many(self.client, "enqueue", calls, register)

    async def claim(self, queues: Sequence[str], limit: int, wait: float) -> list[Delivery]:
        queue_list = list(queues)
        if not queue_list or limit <= 0:
            return []
        keeper = self.keeper
        keeper.watch(queue_list)
        bases = [self._base(q) for q in queue_list]
        deadline = time.monotonic() + max(wait, 0.0)
        interrupts = self._interrupts
        if self._alone_pending:
            # A last-chance job is running here, or one waits for this process to hold
            # nothing: claim nothing more until every held job is finished.
            if not await self._until_idle(wait):
                return []
            self._alone_pending = False
        while True:
            now = time.time()
            token = secrets.token_hex(8)
            alone_ok = keeper.held == 0
            args = [now, limit, int(self.lease_ttl * 1000), token, self.max_lost]
            args += [self._dead_ttl_ms, self.dead_letter_max, int(alone_ok)]
            reply = await self._retry(
                "claim", self._call("claim", bases, args), max(wait, self.max_backoff)
            )
            good, bad = decode_claimed(reply, queue_list, token, self.max_message_size, now)
            passed_over = int(reply[1]) == 1
            if passed_over or any(self._last_chance(d) for d in good):
                self._alone_pending = True
            if good:
                keeper.hold((d.message.queue, d.message.id, d.token) for d in good)
            if bad:
                await self._finish(bad)
                self._counters.dead += len(bad)
            if good:
                return good
            remaining = deadline - time.monotonic()
            if remaining <= 0 or interrupts != self._interrupts:
                return []
            if bad:
                continue
            if passed_over:  # busy here: let the held jobs finish, then claim it alone
                if not await self._until_idle(remaining):
                    return []
                self._alone_pending = False
                continue
            block = min(remaining, self.reaper_interval)
            next_run = float(reply[0])
            if next_run >= 0:
                block = min(block, max(next_run - time.time(), 0.0))
            if block > 0.001:
                await self._wait_for_wake(queue_list, block)

    def _last_chance(self, delivery: Delivery) -> bool:
        return self.max_lost > 0 and delivery.lost >= self.max_lost

    async def _until_idle(self, seconds: float) -> bool:
        """Wait (at most ``seconds``, or until ``wake_claimers``) until no lease is held here."""
        if self.keeper.held == 0:
            return True
        idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle_waiters.add(idle)
        self._waiters.add(idle)
        try:
            await asyncio.wait((idle,), timeout=max(seconds, 0.0))
        finally:
            self._idle_waiters.discard(idle)
            self._waiters.discard(idle)
        return self.keeper.held == 0

    def wake_claimers(self) -> None:
        """Make every waiting ``claim`` of this broker return now (a stopping worker calls it)."""
        self._interrupts += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_for_wake(self, queues: list[str], seconds: float) -> None:
        """Block on the queues' wake-up lists (own connection) until a push, timeout or stop."""
        assert self._blocking is not None
        keys = [wake_key(self.prefix, q) for q in queues]
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()
        self._waiters.add(stop)
        blocking = self._blocking

        async def blpop() -> object:
            return await blocking.blpop(keys, timeout=max(seconds, 0.01))

        pop = loop.create_task(blpop())
        try:
            await asyncio.wait((pop, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiters.discard(stop)
            stop.cancel()
            if not pop.done():
                pop.cancel()
                with contextlib.suppress(asyncio.CancelledError, *RETRYABLE):
                    await pop
        if not pop.cancelled() and isinstance(pop.exception(), RETRYABLE):
            log.warning(
                "Redis at %s unreachable while waiting for jobs (%s)", self.target, pop.exception()
            )
            await asyncio.sleep(min(seconds, self.max_backoff))

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if not outcomes:
            return []
        # Stop extending first: a lease the keeper extended while this (fenced) finish was on
        # its way would otherwise be reported as "lost" once the finish had removed it.
        self.keeper.release((o.delivery.message.queue, o.delivery.message.id) for o in outcomes)
        if self._idle_waiters and self.keeper.held == 0:
            for waiter in self._idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)
        applied = await self._finish(outcomes)
        for outcome, ok in zip(outcomes, applied, strict=True):
            if ok:
                if outcome.kind is OutcomeKind.ACK:
                    self._counters.acked += 1
                elif outcome.kind is OutcomeKind.RETRY:
                    self._counters.retried += 1
                elif outcome.kind is OutcomeKind.DEAD:
                    self._counters.dead += 1
        return applied

    async def _finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        now = time.time()
        indexes: dict[str, int] = {}
        memo_ttl_ms = int(self.finish_memo_ttl * 1000)
        args: list[Any] = [now, self._dead_ttl_ms, self.dead_letter_max, "", memo_ttl_ms, 0]
        for outcome in outcomes:
            queue = outcome.delivery.message.queue
            index = indexes.setdefault(queue, len(indexes) + 1)
            args += outcome_args(outcome, index, now, self.result_ttl)
        args[3] = call_digest(outcomes)
        keys = [self._base(q) for q in indexes]

        async def send() -> Any:
            try:
                return await self._script("finish", keys, args)
            except RETRYABLE:
                args[5] = 1  # it may have run: the next send asks for the first answer
                raise

        reply = await self._retry("finish", send, self.finish_retry_time)
        return [bool(r) for r in reply]

    def counters(self) -> BrokerCounters:
        return self._counters
