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
from dataclasses import dataclass

import redis
import redis.asyncio as aredis

from .url import RedisOptions
from .wire import AsyncWire, Endpoint, SyncWire

_all: weakref.WeakSet[Clients] = weakref.WeakSet()


@dataclass(slots=True)
class LoopClients:
    """The clients of one event loop: commands, and (claimers only) the blocking BLPOP one."""

    client: aredis.Redis
    wire: AsyncWire
    blocking: AsyncWire | None = None
    closer: AsyncGenerator[None] | None = None

    async def aclose(self) -> None:
        for wire in (self.wire, self.blocking):
            if wire is not None:
                with contextlib.suppress(Exception):
                    await wire.aclose()
        with contextlib.suppress(Exception):
            await self.client.aclose()


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
        self.endpoint = Endpoint.of(options)
        self._sync_wire: SyncWire | None = None
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
            wire = AsyncWire(self.endpoint, self._op_timeout)
            found = LoopClients(self._new_async(self._op_timeout), wire)
            self._loops[loop] = found
            found.closer = _closer(self, loop, found)
            _start(found.closer)
        self._last = (loop, found)
        return found

    def blocking(self) -> AsyncWire:
        """The running loop's connection for blocking reads (BLPOP), with a read timeout that a
        blocking call cannot reach, so a dead connection is noticed, and TCP keepalive."""
        here = self.here()
        if here.blocking is None:
            here.blocking = AsyncWire(self.endpoint, self._block_timeout)
        return here.blocking

    def _new_async(self, timeout: float) -> aredis.Redis:
        kwargs = self.options.client_kwargs()
        kwargs["socket_timeout"] = timeout
        if not self.options.url.startswith("unix:"):
            kwargs["socket_keepalive"] = True  # a half-open TCP connection is noticed
        return aredis.Redis.from_url(self.options.url, **kwargs)

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
            kwargs = self.options.client_kwargs()
            kwargs["socket_timeout"] = self._sync_timeout
            client = self._sync = redis.Redis.from_url(self.options.url, **kwargs)
        return client

    def sync_wire(self) -> SyncWire:
        """Lean sync calls (the enqueue hot path): a socket per thread, no pool."""
        wire = self._sync_wire
        if wire is None:
            wire = self._sync_wire = SyncWire(self.endpoint, self._sync_timeout)
        return wire

    def new_sync(self) -> redis.Redis:
        """A separate synchronous client (the lease keeper thread's)."""
        return redis.Redis.from_url(self.options.url, **self.options.client_kwargs())

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
