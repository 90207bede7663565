"""Connections, the ``Repid`` app object and the current-connection context.

A :class:`Connection` pairs a message broker with a results broker. ``async with app.magic():``
makes it the current connection for the block; :func:`set_default_connection` makes one the
process-wide fallback (the Django app does that once, so views need no ``magic()``).

Where calls run:

* Async callers, on any event loop (``asyncio.run`` twice, ``async_to_sync``, an ASGI server,
  a test's own loop), await the broker directly: the Redis broker keeps a client per loop.
* Sync callers (WSGI views, commands, threads) enqueue and read results over the broker's sync
  client when it has one (``supports_sync``): no event loop, no thread hop. Other sync calls
  (admin operations, ``queue.declare()``) run on a private background loop, the *portal*.
* A loop-bound broker (the in-memory one, ``loop_bound``) lives on the first loop that uses it;
  calls from elsewhere are handed to that loop (or to the portal when it has none).
* After ``fork`` a child process starts a new portal and new clients of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from contextvars import ContextVar
from typing import Any, Literal, TypeVar

from .brokers.base import MessageBroker, ResultBroker

T = TypeVar("T")

_current: ContextVar[Connection | None] = ContextVar("repid_connection", default=None)
_default: Connection | None = None
_connections: weakref.WeakSet[Connection] = weakref.WeakSet()


class Connection:
    """A message broker plus an optional separate results broker.

    With ``results_broker=None`` the message broker stores results itself when it can (both
    shipped brokers do, atomically with the completion).
    """

    def __init__(
        self, message_broker: MessageBroker, results_broker: ResultBroker | None = None
    ) -> None:
        self.message_broker = message_broker
        if results_broker is None and isinstance(message_broker, ResultBroker):
            results_broker = message_broker
        self.results_broker = results_broker
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = False
        self._lock = threading.Lock()
        self._portal: _Portal | None = None
        self.loop_bound = message_broker.loop_bound or getattr(results_broker, "loop_bound", False)
        _connections.add(self)

    @property
    def results_apart(self) -> bool:
        """True when results go to a broker other than the message broker."""
        results: object = self.results_broker
        return results is not None and results is not self.message_broker

    @property
    def is_open(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        """Open the brokers (idempotent); a loop-bound broker binds to the running loop."""
        if self.loop_bound:
            self._bind(asyncio.get_running_loop())
        if self._connected:
            return
        await self.message_broker.connect()
        if self.results_apart:
            assert self.results_broker is not None
            connect = getattr(self.results_broker, "connect", None)
            if connect is not None:
                await connect()
        self._connected = True

    async def disconnect(self) -> None:
        """Close the brokers; the connection can be opened again later."""
        if not self._connected:
            return
        self._connected = False
        await self.message_broker.disconnect()
        if self.results_apart:
            disconnect = getattr(self.results_broker, "disconnect", None)
            if disconnect is not None:
                await disconnect()

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if self._loop is loop:
                return
            old = self._loop
            if old is not None and self._connected and not old.is_closed() and old.is_running():
                raise RuntimeError(
                    "this Connection is open on another running event loop; "
                    "use Connection.call() to reach it"
                )
            # The previous loop is gone (closed or stopped): its clients are unusable.
            self._loop = loop
            self._connected = False

    def _target_loop(self) -> asyncio.AbstractEventLoop:
        """Where sync calls run: the portal, or the loop that owns a loop-bound broker."""
        with self._lock:
            loop = self._loop
            if self.loop_bound and loop is not None and loop.is_running():
                return loop
            if self._portal is None or not self._portal.alive:
                self._portal = _Portal()
            if self.loop_bound:
                self._loop = self._portal.loop
                self._connected = False
            return self._portal.loop

    async def run(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Await ``work()`` here (or on the loop that owns a loop-bound broker), opening the
        connection if needed."""
        if not self.loop_bound:  # the broker connects on first use, within each call's deadline
            return await work()
        here = asyncio.get_running_loop()
        owner = self._loop
        if owner is here and self._connected:  # the common case: open on this loop already
            return await work()
        if owner is None or owner is here or owner.is_closed() or not owner.is_running():
            await self.connect()
            return await work()
        future = asyncio.run_coroutine_threadsafe(self._open_and_run(work), owner)
        return await asyncio.wrap_future(future)

    def call(self, work: Callable[[], Coroutine[Any, Any, T]], timeout: float | None = None) -> T:
        """Run ``work()`` from synchronous code (no running loop in this thread) and wait."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "Connection.call() is for synchronous code; in async code await the coroutine"
            )
        loop = self._target_loop()
        future = asyncio.run_coroutine_threadsafe(self._open_and_run(work), loop)
        return future.result(timeout)

    async def _open_and_run(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        await self.connect()
        return await work()

    def close(self) -> None:
        """Disconnect and stop the portal thread (synchronous; for process shutdown)."""
        portal = self._portal
        if portal is not None and portal.alive:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.disconnect(), portal.loop).result(5)
            portal.stop()
        self._portal = None

    def _after_fork(self) -> None:
        """In a forked child: the parent's portal thread and loop are not ours."""
        self._lock = threading.Lock()
        self._portal = None
        if self.loop_bound:
            self._loop = None
            self._connected = False


class _Portal:
    """A daemon thread running an event loop for synchronous callers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name="repid-portal", daemon=True
        )
        self._thread.start()
        ready.wait()

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class Repid:
    """The application object of the seeds: ``Repid(Connection(broker))``."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @contextlib.asynccontextmanager
    async def magic(self, auto_disconnect: bool = False) -> AsyncIterator[Connection]:
        """Make this app's connection current (and open) inside the block."""
        token = _current.set(self.connection)
        try:
            await self.connection.connect()
            yield self.connection
        finally:
            _current.reset(token)
            if auto_disconnect:
                await self.connection.disconnect()


def set_default_connection(connection: Connection | None) -> None:
    """Make ``connection`` the process-wide fallback used outside ``app.magic()``."""
    global _default  # noqa: PLW0603 - one process-wide default, by design
    _default = connection


def get_connection() -> Connection:
    """The current connection: the ``magic()`` block's, else the process default."""
    connection = _current.get() or _default
    if connection is None:
        raise RuntimeError(
            "no Repid connection: wrap the code in 'async with app.magic():' or, in a Django "
            "project, add 'repid_django' to INSTALLED_APPS"
        )
    return connection


class Call[T]:
    """The result of an engine call such as ``job.enqueue()`` or ``queue.declare()``.

    In async code, await it. In sync code (no running event loop in this thread) the call has
    already run when it returns; ``.value`` holds its result and awaiting it is not needed.
    """

    __slots__ = ("_awaitable", "_done", "_value")

    def __init__(self, awaitable: Awaitable[T] | None = None, value: T | None = None) -> None:
        self._awaitable = awaitable
        self._done = awaitable is None
        self._value = value

    def __await__(self) -> Generator[Any, None, T]:
        if not self._done:
            assert self._awaitable is not None
            awaitable, self._awaitable = self._awaitable, None
            self._value = yield from awaitable.__await__()
            self._done = True
        return self._value  # type: ignore[return-value]

    @property
    def value(self) -> T:
        """The call's result (sync code), or ``RuntimeError`` if it still has to be awaited."""
        if not self._done:
            raise RuntimeError("this call was made in async code: 'await' it to get its value")
        return self._value  # type: ignore[return-value]

    def __del__(self) -> None:
        awaitable = self._awaitable
        if awaitable is not None and not self._done:
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()
            warnings.warn(
                "a repid call (e.g. job.enqueue()) was made in async code but never awaited: "
                "nothing was sent",
                RuntimeWarning,
                stacklevel=1,
            )


def run_anywhere[T](
    work: Callable[[Connection], Coroutine[Any, Any, T]],
    connection: Connection | None = None,
    sync: Callable[[Connection], T] | None = None,
    sync_on: Literal["messages", "results"] = "messages",
) -> Call[T]:
    """Await-or-call helper behind ``job.enqueue()`` and friends (see :class:`Call`).

    ``sync``: the call for sync code when the broker named by ``sync_on`` has a sync path
    (``supports_sync``); without one, sync code runs ``work`` on the portal.
    """
    conn = connection or get_connection()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        broker = conn.message_broker if sync_on == "messages" else conn.results_broker
        if sync is not None and broker is not None and broker.supports_sync:
            return Call(value=sync(conn))
        return Call(value=conn.call(lambda: work(conn)))
    return Call(conn.run(lambda: work(conn)))


def _reset_after_fork() -> None:
    for connection in list(_connections):
        connection._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
