"""The Redis broker: at-least-once delivery with leases, fencing and dead letters.

``RedisMessageBroker(url)`` implements :class:`MessageBroker` and :class:`ResultBroker` (results
are written by the same script that completes the job). ``url=None`` uses the project's
embedded Redis (:mod:`repid_django.engine.brokers.embedded`). Works on Redis >= 6.2 (no 7.x-only
commands) and Valkey.

How it works (key layout in :mod:`.keys`, scripts in ``lua/``):

* Every state change is one Lua script, sent with EVALSHA (:mod:`.scripts`).
* ``enqueue``: one script call per queue in the batch, all in one round trip. Ready messages go
  to a zset scored by priority then FIFO sequence; deferred ones to a zset by ``run_at`` (the
  caller decides which; the argument encodings are in :mod:`.codec` and ``lua/``).
* ``claim``: one script reaps expired leases, promotes due delayed messages and leases up to
  ``limit`` ready ones (token + deadline), in one round trip. Bodies are decoded in Python
  (JSON only); undecodable, too large or expired ones are dead-lettered by a follow-up script
  and never returned. With nothing ready, the claim blocks (BLPOP, on its own connection) on the
  queues' wake-up lists, which every enqueue pushes to, for at most ``min(wait, time until the
  next delayed message, reaper_interval)``: no sleep-polling.
* Claims are idempotent: a claim sent again because its reply was lost (in the same call or
  the worker's next one) gets the batch its first send leased, not a second one; so a network
  blip never leaves jobs leased to nobody, nor counts a lost lease against them. Cost: one
  small key per claimer (the ids it leased, ``<prefix>:{<queue>}:clm:<token>``), dropped by its
  next claim.
* Leases: the :class:`~.lease.LeaseKeeper` thread extends held leases and reaps; a job of
  a dead worker runs again within ``lease_ttl + reaper_interval``; after ``max_lost`` expired
  leases it is dead-lettered as ``worker_lost``. A delivery stays leased until its outcome is
  applied (a finish retried through an outage keeps it). A hung event loop keeps a job at
  most its timeout plus ``hang_grace`` (default 30 s) past its last sign of life; then the job
  runs elsewhere and the hung worker's late outcome is refused.
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
  still gets ``False``). Cost: one SET per call inside the same script (the GET only on a
  repeated send), no extra round trip. A repeat later than that (Redis unreachable for longer)
  can still report "lease lost" for an outcome the first attempt applied.
* Dead letters keep the reason, the error and the stored body; at most ``dead_letter_max`` per
  queue, expiring after ``dead_letter_ttl`` seconds.
* Topologies (:mod:`.topology`): one server, a Redis or Valkey Cluster (``redis+cluster://``)
  or Sentinel (``redis+sentinel://``). On a Cluster each queue's keys share one slot; claims,
  finishes, idle waits and the lease keeper run one script per slot group, every script
  declaring the fixed keys it touches (:mod:`.cluster`). With Sentinel every connection asks
  for the primary and checks its role (:mod:`.sentinel`). ``wait_replicas``: an enqueue
  returns only once that many replicas have it (``WAIT``), else ``NotReplicatedError``.
* Clients (:mod:`.clients`): async callers use a client of their own running loop, sync
  callers a thread-safe sync client (no event loop, no thread hop); a forked child builds new
  ones. Enqueue lives in :mod:`.produce`; claim, finish and the lease keeper in :mod:`.consume`.
* Redis lost while running: claim and finish retry with back-off (logged) until Redis is back;
  finish is fenced and enqueue refuses duplicate ids, so repeating them is safe. A producer
  call (enqueue, from sync or async code) has a total deadline of ``enqueue_timeout`` seconds
  (default 2) and then fails with a ``ConnectionError`` naming the Redis (password redacted);
  each message is then written whole or not at all. Enqueue is at-least-once: a retry after
  a lost reply writes again a job that ran and finished in between (docs/engine.md).
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import redis
import redis.asyncio as aredis
from redis.exceptions import RedisError

from ...limits import from_fields
from ...message import DEFAULT_MAX_MESSAGE_SIZE
from ..base import BrokerCounters, MessageBroker, QueueStats, ResultBroker
from . import scripts as redis_scripts
from .admin import RedisAdminMixin
from .clients import Clients
from .cluster import slot_of
from .codec import text
from .consume import RedisConsumerMixin
from .keys import QUEUE_PARTS, queue_base, registry_key
from .lease import Heartbeat, LeaseKeeper
from .produce import RedisProducerMixin
from .schedules import RedisScheduleMixin
from .scripts import Script, retrying
from .url import RedisOptions, redact_url

__all__ = ["RedisMessageBroker", "redact_url"]

DAY = 86_400.0
_brokers: weakref.WeakSet[RedisMessageBroker] = weakref.WeakSet()


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"RedisMessageBroker: {name} must be a positive number, got {value!r}")
    return float(value)


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"RedisMessageBroker: {name} must be an int >= 0, got {value!r}")
    return value


class RedisMessageBroker(
    RedisProducerMixin,
    RedisConsumerMixin,
    RedisAdminMixin,
    RedisScheduleMixin,
    MessageBroker,
    ResultBroker,
):
    """Message and result broker over Redis; see the module docstring."""

    loop_bound: ClassVar[bool] = False
    supports_sync: ClassVar[bool] = True

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = "repid",
        lease_ttl: float = 30.0,
        reaper_interval: float = 5.0,
        max_lost: int = 3,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        result_ttl: float = 3_600.0,
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
        enqueue_timeout: float = 2.0,
        finish_retry_time: float = 60.0,
        finish_memo_ttl: float | None = None,
        max_backoff: float = 1.0,
        hang_grace: float = 30.0,
        wait_replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        if not isinstance(prefix, str) or not prefix or any(c in prefix for c in "{} "):
            raise ValueError(f"RedisMessageBroker: prefix must be a non-empty word, got {prefix!r}")
        self.prefix = prefix
        self.lease_ttl = _positive("lease_ttl", lease_ttl)
        self.reaper_interval = _positive("reaper_interval", reaper_interval)
        self.max_lost = _count("max_lost", max_lost)
        self.max_message_size = int(_positive("max_message_size", max_message_size))
        self.result_ttl = _positive("result_ttl", result_ttl)
        self.dead_letter_ttl = _positive("dead_letter_ttl", dead_letter_ttl)
        self.dead_letter_max = int(_positive("dead_letter_max", dead_letter_max))
        self.enqueue_timeout = _positive("enqueue_timeout", enqueue_timeout)
        self.finish_retry_time = _positive("finish_retry_time", finish_retry_time)
        if finish_memo_ttl is None:
            finish_memo_ttl = self.finish_retry_time + 2 * max_backoff
        self.finish_memo_ttl = _positive("finish_memo_ttl", finish_memo_ttl)
        self.max_backoff = _positive("max_backoff", max_backoff)
        self.hang_grace = _positive("hang_grace", hang_grace)
        if (
            isinstance(wait_replicas, bool)
            or not isinstance(wait_replicas, int)
            or wait_replicas < 0
        ):
            raise ValueError(
                f"RedisMessageBroker: wait_replicas must be an int >= 0, got {wait_replicas!r}"
            )
        self.wait_replicas = wait_replicas
        self.replica_timeout = _positive("replica_timeout", replica_timeout)
        self.socket_timeout = _positive("socket_timeout", socket_timeout)
        self.socket_connect_timeout = _positive("socket_connect_timeout", socket_connect_timeout)
        self._embedded_dir = embedded_dir
        self._options: RedisOptions | None = None
        if url is not None:
            self._options = self._make_options(
                url, ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs, ssl_check_hostname
            )
            self._options.validate()
        self._cluster = self._options is not None and self._options.topology.is_cluster  # once
        self._ssl = (ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs, ssl_check_hostname)
        self._clients: Clients | None = None
        self._keeper: LeaseKeeper | None = None
        self._registered: set[str] = set()
        self._interrupts = 0
        self._waiters: set[asyncio.Future[None]] = set()
        self._idle_waiters: set[asyncio.Future[None]] = set()
        self._alone_pending = False
        self._unsure_claim: dict[tuple[str, ...], str] = {}
        self._claim_memo: dict[tuple[str, ...], str] = {}
        self._turn = 0
        self._unsure_finish: set[str] = set()
        self._conc_queues: set[str] = set()
        self._beats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Heartbeat] = (
            weakref.WeakKeyDictionary()
        )
        self._counters = BrokerCounters()
        _brokers.add(self)

    def _make_options(self, url: str, *ssl: Any) -> RedisOptions:
        # The connect timeout never exceeds the producer deadline: a dead host fails in time.
        connect = min(self.socket_connect_timeout, self.enqueue_timeout)
        ca, cert, key, reqs, check = ssl
        return RedisOptions(url, ca, cert, key, reqs, check, self.socket_timeout, connect)

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

    # clients -------------------------------------------------------------------------------
    def _open_clients(self) -> Clients:
        """The broker's clients, resolving the embedded Redis first when no URL was given."""
        clients = self._clients
        if clients is None:
            if self._options is None:
                from ..embedded import ensure_embedded_redis

                url = ensure_embedded_redis(self._embedded_dir or os.getcwd())
                self._options = self._make_options(url, *self._ssl)
            clients = self._clients = Clients(
                self._options,
                op_timeout=self.socket_timeout,
                # BLPOP blocks at most reaper_interval: a read that takes longer is a dead link.
                block_timeout=self.reaper_interval + self.socket_timeout,
                # A sync producer's whole call (with retries) is bounded by enqueue_timeout.
                sync_timeout=self.enqueue_timeout,
            )
        return clients

    @property
    def client(self) -> aredis.Redis:
        """The async client of the running event loop."""
        return self._open_clients().here().client

    @property
    def sync_client(self) -> redis.Redis:
        """The thread-safe sync client (for sync callers: no event loop involved)."""
        return self._open_clients().sync()

    def _blocking(self) -> Clients:
        assert self._clients is not None
        return self._clients

    @property
    def is_cluster(self) -> bool:
        """True when the broker URL names a Redis Cluster (``redis+cluster://``)."""
        return self._cluster

    def _slot_groups(self, queues: list[str]) -> list[list[str]]:
        """``queues`` by the Cluster slot of their keys (in order of first appearance); one
        group of them all on a standalone Redis or Sentinel."""
        if not self.is_cluster or len(queues) < 2:
            return [queues]
        groups: dict[int, list[str]] = {}
        for queue in queues:
            groups.setdefault(slot_of(self._base(queue)), []).append(queue)
        return list(groups.values())

    def _declare(self, script: Script, bases: list[str]) -> list[str]:
        """The KEYS of a call of ``script`` over queue ``bases``: on a Cluster, every fixed key
        it may touch is declared after the bases (see :mod:`.cluster`)."""
        if not self.is_cluster:
            return bases
        return [*bases, *(base + part for base in bases for part in script.parts)]

    @property
    def keeper(self) -> LeaseKeeper:
        """The lease keeper thread, started by the first claim of this process."""
        keeper = self._keeper
        if keeper is None:
            clients = self._open_clients()
            keeper = self._keeper = LeaseKeeper(
                clients.new_sync_wire(),
                prefix=self.prefix,
                lease_ttl=self.lease_ttl,
                reaper_interval=self.reaper_interval,
                max_lost=self.max_lost,
                dead_ttl_ms=self._dead_ttl_ms,
                dead_max=self.dead_letter_max,
                target=self.target,
                hang_grace=self.hang_grace,
                groups=self._slot_groups,
                declare=self._declare,
            )
            keeper.start()
        return keeper

    async def connect(self) -> None:
        """Check that Redis answers (a clear ``ConnectionError`` if not); clients are made per
        event loop and thread on first use, so calling this on any loop is cheap and safe."""
        if self._clients is None:
            await asyncio.to_thread(self._open_clients)
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            raise ConnectionError(
                f"cannot connect to Redis at {self.target}: {exc}. Check that Redis is "
                "running and reachable there, or fix the broker URL (REPID_BROKER_URL)."
            ) from None

    async def disconnect(self) -> None:
        """Stop the lease keeper and close this loop's and the sync clients (they are made
        again on the next use)."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            await asyncio.to_thread(keeper.stop)
        clients = self._clients
        if clients is not None:
            await clients.aclose_here()
            clients.close_sync()

    def after_fork(self) -> None:
        """In a forked child: the parent's lease keeper thread and waiters are not ours."""
        self._keeper = None
        self._waiters = set()
        self._idle_waiters = set()
        self._alone_pending = False
        self._unsure_claim = {}
        self._claim_memo = {}
        self._beats = weakref.WeakKeyDictionary()

    @property
    def _dead_ttl_ms(self) -> int:
        return int(self.dead_letter_ttl * 1000)

    async def _retry[T](
        self, what: str, call: Callable[[], Awaitable[T]], give_up: float | None = None
    ) -> T:
        return await retrying(what, call, self.target, self.max_backoff, give_up)

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script over queue bases ``keys`` on the running loop's lean connection (claim,
        finish, admin)."""
        wire = self._open_clients().here().wire
        script = redis_scripts.script(name)
        return await wire.run(script, self._declare(script, keys), args)

    def _script_sync(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """:meth:`_script` for sync callers, over the thread's lean sync connection."""
        script = redis_scripts.script(name)
        wire = self._open_clients().sync_wire()
        return wire.run(script, self._declare(script, keys), args)

    def _base(self, queue: str) -> str:
        return queue_base(self.prefix, queue)

    # queues --------------------------------------------------------------------------------
    async def declare_queue(self, name: str) -> None:
        await self.client.sadd(registry_key(self.prefix), name)
        self._registered.add(name)

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
            pipe.hgetall(base + "ctl")  # paused and limits: one read
            ready, delayed, running, dead, ctl = await pipe.execute()
        fields = {text(k): text(v) for k, v in ctl.items()}
        paused = fields.pop("paused", None) is not None
        return QueueStats(name, ready, delayed, running, dead, paused, from_fields(fields))

    def counters(self) -> BrokerCounters:
        return self._counters


def _reset_after_fork() -> None:
    for broker in list(_brokers):
        broker.after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
