"""Redis clients of one broker: one per event loop, one for sync callers, rebuilt after fork.

An asyncio client is tied to the loop it first ran on. :class:`Clients` therefore keeps one
async client per running loop (``asyncio.run`` twice, ``async_to_sync``, an ASGI server's loop,
a test's own loop each get their own) and closes it when that loop shuts down: ``asyncio.run``,
``asyncio.Runner``, asgiref and uvloop all finalise the loop's async generators before closing
it, and a tiny generator registered on the loop does the closing then. Sync callers (WSGI views,
management commands, threads) use one thread-safe redis-py client with its own pool: no thread
hop and no event loop. A forked child drops everything it inherited (sockets and threads belong
to the parent) and builds new clients on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, cast

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from .cluster import ClusterAsyncWire, ClusterSyncWire, slot_of
from .endpoint import Endpoint
from .topology import Kind, Topology
from .url import RedisOptions
from .wire import AsyncWire, SyncWire

AnyAsyncWire = AsyncWire | ClusterAsyncWire
AnySyncWire = SyncWire | ClusterSyncWire

_all: weakref.WeakSet[Clients] = weakref.WeakSet()


@dataclass(slots=True)
class LoopClients:
    """The clients of one event loop: commands, and (claimers only) the blocking BLPOP one."""

    client: aredis.Redis
    wire: AnyAsyncWire
    sentinels: list[aredis.Redis] = field(default_factory=list)
    """The Sentinel clients behind ``client`` (Sentinel only), closed with it."""
    blocking: dict[int, AnyAsyncWire] = field(default_factory=dict)
    """By slot on a Cluster (a BLPOP names keys of one slot), else one, under 0."""
    pops: dict[tuple[str, ...], asyncio.Task[Any]] = field(default_factory=dict)
    """The idle wait's BLPOPs still pending, by their keys. The next wait takes them over, so
    on a Cluster a wake-up in one slot leaves the other slots' blocking calls (and their
    connections) in place instead of cancelling them, which drops the connection."""
    closer: AsyncGenerator[None] | None = None

    async def aclose(self) -> None:
        pops, self.pops = list(self.pops.values()), {}
        for pop in pops:
            pop.cancel()
        await asyncio.gather(*pops, return_exceptions=True)
        for wire in (self.wire, *self.blocking.values()):
            with contextlib.suppress(Exception):
                await wire.aclose()
        for client in (self.client, *self.sentinels):
            with contextlib.suppress(Exception):
                await client.aclose()


class Clients:
    """Every Redis client of one broker (see the module docstring)."""

    def __init__(
        self, options: RedisOptions, *, op_timeout: float, block_timeout: float, sync_timeout: float
    ) -> None:
        self.options = options
        self._op_timeout = op_timeout
        self._sync_timeout = sync_timeout
        self._block_timeout = block_timeout
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopClients] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop, LoopClients] | None = None
        self._sync: redis.Redis | None = None
        self.topology = options.topology
        self.endpoint = Endpoint.of(options)
        self._sync_wire: AnySyncWire | None = None
        _all.add(self)

    # async ---------------------------------------------------------------------------------
    def here(self) -> LoopClients:
        """The clients of the running loop (created on first use)."""
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        found = self._loops.get(loop)
        if found is None:
            wire = self._async_wire(self._op_timeout)
            client, sentinels = async_client(self.options, self._op_timeout)
            found = LoopClients(client, wire, sentinels)
            self._loops[loop] = found
            found.closer = _closer(self, loop, found)
            _start(found.closer)
        self._last = (loop, found)
        return found

    def blocking(self, key: str) -> AnyAsyncWire:
        """The running loop's connection for blocking reads (BLPOP) of ``key``'s slot, with a
        read timeout that a blocking call cannot reach, so a dead connection is noticed, and
        TCP keepalive."""
        here = self.here()
        slot = slot_of(key) if self.topology.is_cluster else 0
        found = here.blocking.get(slot)
        if found is None:
            found = here.blocking[slot] = self._async_wire(self._block_timeout)
        return found

    def _async_wire(self, timeout: float) -> AnyAsyncWire:
        if self.topology.is_cluster:
            return ClusterAsyncWire(self.endpoint, list(self.topology.nodes), timeout)
        return AsyncWire(self.endpoint, timeout)

    def forget(self, loop: asyncio.AbstractEventLoop, clients: LoopClients) -> None:
        if self._loops.get(loop) is clients:
            del self._loops[loop]
        if self._last is not None and self._last[0] is loop:
            self._last = None

    async def aclose_here(self) -> None:
        """Close the running loop's clients (they are rebuilt on the next use)."""
        loop = asyncio.get_running_loop()
        found = self._loops.get(loop)
        if found is not None:
            self.forget(loop, found)
            closer, found.closer = found.closer, None
            if closer is not None:
                await closer.aclose()  # closes the clients in its ``finally``

    # sync ----------------------------------------------------------------------------------
    def sync(self) -> redis.Redis:
        """The thread-safe synchronous client (its pool hands each thread a connection)."""
        client = self._sync
        if client is None:
            client = self._sync = sync_client(self.options, self._sync_timeout)
        return client

    def sync_wire(self) -> AnySyncWire:
        """Lean sync calls (the enqueue hot path): a socket per thread (and node), no pool."""
        wire = self._sync_wire
        if wire is None:
            wire = self._sync_wire = self._new_sync_wire(self._sync_timeout)
        return wire

    def new_sync_wire(self) -> AnySyncWire:
        """Separate lean sync calls (the lease keeper thread's), with the socket timeout."""
        return self._new_sync_wire(self.options.socket_timeout)

    def _new_sync_wire(self, timeout: float) -> AnySyncWire:
        if self.topology.is_cluster:
            return ClusterSyncWire(self.endpoint, list(self.topology.nodes), timeout)
        return SyncWire(self.endpoint, timeout)

    def close_sync(self) -> None:
        client, self._sync = self._sync, None
        if client is not None:
            client.close()
        wire, self._sync_wire = self._sync_wire, None
        if wire is not None:
            wire.close()

    def after_fork(self) -> None:
        """In a forked child: forget the parent's clients without touching their sockets."""
        self._loops = weakref.WeakKeyDictionary()
        self._last = None
        self._sync = None
        self._sync_wire = None


def _node_kwargs(
    options: RedisOptions, topology: Topology, timeout: float | None
) -> dict[str, Any]:
    kwargs = options.client_kwargs()
    kwargs["socket_timeout"] = timeout
    if topology.tls:
        kwargs["ssl"] = True  # the ssl_* options come from client_kwargs
    kwargs["username"] = topology.username
    kwargs["password"] = topology.password
    return kwargs


def _sentinel_kwargs(options: RedisOptions, topology: Topology) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_timeout": options.socket_connect_timeout,
        "socket_connect_timeout": options.socket_connect_timeout,
    }
    if topology.sentinel_password is not None:
        kwargs["password"] = topology.sentinel_password
    if topology.sentinel_username is not None:
        kwargs["username"] = topology.sentinel_username
    if topology.tls:
        kwargs["ssl"] = True
    return kwargs


def sync_client(options: RedisOptions, timeout: float | None) -> redis.Redis:
    """A thread-safe redis-py client for ``options`` (``RedisCluster`` for a Cluster, the
    Sentinels' current primary for Sentinel); ``timeout``: its socket read timeout."""
    topology = options.topology
    if topology.kind is Kind.STANDALONE:
        kwargs = options.client_kwargs()
        kwargs["socket_timeout"] = timeout
        return redis.Redis.from_url(options.url, **kwargs)
    kwargs = _node_kwargs(options, topology, timeout)
    if topology.is_cluster:
        nodes = [ClusterNode(host, port) for host, port in topology.nodes]  # type: ignore[no-untyped-call]
        # A RedisCluster takes the same commands (routed by slot), but is no Redis subclass.
        return cast(redis.Redis, RedisCluster(startup_nodes=nodes, **kwargs))
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(topology.nodes), sentinel_kwargs=_sentinel_kwargs(options, topology), **kwargs
    )
    primary = sentinel.master_for(topology.service, db=topology.db)  # type: ignore[no-untyped-call]
    return cast(redis.Redis, primary)


def async_client(
    options: RedisOptions, timeout: float | None
) -> tuple[aredis.Redis, list[aredis.Redis]]:
    """:func:`sync_client` for asyncio (bound to the loop it first runs on), with TCP
    keepalive (a half-open connection is noticed); and, for Sentinel, the clients of the
    Sentinels it asks (to close with it)."""
    topology = options.topology
    keepalive = not options.url.startswith("unix:")
    if topology.kind is Kind.STANDALONE:
        kwargs = options.client_kwargs()
        kwargs["socket_timeout"] = timeout
        if keepalive:
            kwargs["socket_keepalive"] = True
        return aredis.Redis.from_url(options.url, **kwargs), []
    kwargs = _node_kwargs(options, topology, timeout)
    kwargs["socket_keepalive"] = True
    if topology.is_cluster:
        nodes = [AsyncClusterNode(host, port) for host, port in topology.nodes]
        return cast(aredis.Redis, aredis.RedisCluster(startup_nodes=nodes, **kwargs)), []
    sentinel = AsyncSentinel(  # type: ignore[no-untyped-call]
        list(topology.nodes), sentinel_kwargs=_sentinel_kwargs(options, topology), **kwargs
    )
    primary = sentinel.master_for(topology.service, db=topology.db)
    return cast(aredis.Redis, primary), list(sentinel.sentinels)


def _start(closer: AsyncGenerator[None]) -> None:
    """Run ``closer`` to its ``yield`` now: that registers it with the running loop, which
    finalises it (running its ``finally``) when the loop shuts down."""
    step = closer.__anext__().__await__()
    with contextlib.suppress(StopIteration):
        step.send(None)


async def _closer(
    owner: Clients, loop: asyncio.AbstractEventLoop, clients: LoopClients
) -> AsyncGenerator[None]:
    """Runs until its loop finalises async generators (at shutdown), then closes the clients."""
    try:
        yield
    finally:
        owner.forget(loop, clients)
        await clients.aclose()


def _reset_after_fork() -> None:
    for clients in list(_all):
        clients.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
