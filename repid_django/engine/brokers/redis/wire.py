"""A lean RESP client for the enqueue hot path: a command out, its reply back, nothing else.

redis-py spends more time per call in its own layers (pool, locks, hooks, retries) than a
loopback round trip takes. The producer's one-script enqueue needs none of that, so it goes
over these small connections: commands packed by hiredis, replies parsed by hiredis.

* :class:`SyncWire`: one socket per thread (sync views, commands, threads), with a socket
  timeout; a forked child opens its own.
* :class:`AsyncWire`: one :class:`asyncio.Protocol` connection per event loop; concurrent
  callers pipeline on it (replies come back in order).

Errors are redis-py's (``ConnectionError``, ``TimeoutError``, ``NoScriptError``,
``ResponseError``...), so the broker's retry rules apply unchanged. TLS (``rediss://``), unix
sockets, ``AUTH`` (user and password) and the database number come from the broker's URL.
"""

from __future__ import annotations

import asyncio
import collections
import os
import select
import socket
import threading
import time
from typing import Any, cast

import hiredis
from redis.exceptions import (
    AskError,
    AuthenticationError,
    BusyLoadingError,
    MovedError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .endpoint import Endpoint
from .scripts import Script, ServerBusyError

_ERRORS: dict[str, type[ResponseError] | type[RedisConnectionError]] = {
    "NOSCRIPT": NoScriptError,
    "READONLY": ReadOnlyError,
    "LOADING": BusyLoadingError,
    "NOAUTH": AuthenticationError,
    "WRONGPASS": AuthenticationError,
    "OOM": OutOfMemoryError,
    "BUSY": ServerBusyError,
    "MASTERDOWN": ServerBusyError,
    "TRYAGAIN": ServerBusyError,
    "CLUSTERDOWN": ServerBusyError,
}


def _raise_if_error(reply: Any) -> Any:
    if isinstance(reply, hiredis.ReplyError):
        message = str(reply)
        code, _, rest = message.partition(" ")
        if code in ("MOVED", "ASK"):  # a Cluster's redirection: "<slot> <host>:<port>"
            raise (MovedError if code == "MOVED" else AskError)(rest)
        raise _ERRORS.get(code, ResponseError)(message)
    return reply


class _SyncConnection:
    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        host, port = endpoint.host, endpoint.port
        if endpoint.locator is not None:
            host, port = endpoint.locator.locate_sync()
        try:
            if endpoint.path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(endpoint.connect_timeout)
                sock.connect(endpoint.path)
            else:
                sock = socket.create_connection((host, port), timeout=endpoint.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if endpoint.tls is not None:
                    sock = endpoint.tls.wrap_socket(sock, server_hostname=host)
        except TimeoutError:
            raise RedisTimeoutError(f"Timeout connecting to {endpoint.target}") from None
        except OSError as exc:
            raise RedisConnectionError(f"Error connecting to {endpoint.target}: {exc}") from None
        sock.settimeout(timeout)
        self.sock = sock
        self.reader = hiredis.Reader()
        try:
            for command in endpoint.hello:
                self.call(command)
            if endpoint.locator is not None:
                endpoint.locator.check_role(self.call(("ROLE",)), host, port)
        except BaseException:
            sock.close()
            raise

    def __del__(self) -> None:
        # The thread that owned it ended (its thread-local data went): close, quietly.
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close()

    def stale(self) -> bool:
        """True when something (an EOF, an error) waits on a socket that owes us nothing."""
        return bool(select.select([self.sock], [], [], 0)[0])

    def call(self, args: tuple[Any, ...]) -> Any:
        sock, reader = self.sock, self.reader
        sock.sendall(hiredis.pack_command(args))
        while True:
            data = sock.recv(65536)
            if not data:
                raise RedisConnectionError("Connection closed by server.")
            reader.feed(data)
            reply = reader.gets()
            if reply is not False:
                return _raise_if_error(reply)


class SyncWire:
    """Sync calls on one socket per thread of this process."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._local = threading.local()
        self._pid = os.getpid()

    def call(self, *args: Any, timeout: float | None = None) -> Any:
        """Send one command and return its reply; ``timeout`` (seconds, at most the wire's own)
        bounds this call's reads."""
        local = self._local
        connection: _SyncConnection | None = getattr(local, "connection", None)
        if connection is None or self._pid != os.getpid():
            if self._pid != os.getpid():  # forked: nothing of the parent's is ours
                self._local = local = threading.local()
                self._pid = os.getpid()
            connection = local.connection = _SyncConnection(self.endpoint, self.timeout)
        elif connection.stale():
            self._drop(connection)  # the server closed it while idle (restart, idle timeout)
            connection = local.connection = _SyncConnection(self.endpoint, self.timeout)
        read = self.timeout if timeout is None else min(self.timeout, max(timeout, 0.001))
        connection.sock.settimeout(read)
        try:
            return connection.call(args)
        except ReadOnlyError:
            self._drop(connection)  # a demoted primary: the next call finds the new one
            raise
        except ResponseError:
            raise  # an error reply: the connection is still in step
        except RedisConnectionError:
            self._drop(connection)  # closed by the server (restart, idle timeout, kill)
            raise
        except TimeoutError:
            self._drop(connection)
            raise RedisTimeoutError(f"Timeout reading from {self.endpoint.target}") from None
        except OSError as exc:
            self._drop(connection)
            raise RedisConnectionError(f"Error talking to {self.endpoint.target}: {exc}") from None

    def call_keyed(self, key: str, *args: Any, timeout: float | None = None) -> Any:
        """:meth:`call` (``key`` routes a command on a Cluster: see :mod:`.cluster`)."""
        return self.call(*args, timeout=timeout)

    def run(
        self, script: Script, keys: list[str], args: list[Any], deadline: float | None = None
    ) -> Any:
        """Run a broker script (EVALSHA; loaded first when the server answers NOSCRIPT);
        ``deadline`` (``time.monotonic()``) bounds the whole call."""

        def left() -> float | None:
            return None if deadline is None else deadline - time.monotonic()

        try:
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args, timeout=left())
        except NoScriptError:
            self.call("SCRIPT", "LOAD", script.source, timeout=left())
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args, timeout=left())

    def _drop(self, connection: _SyncConnection) -> None:
        self._local.connection = None
        connection.sock.close()

    def close(self) -> None:
        """Close this thread's socket (others close when their thread's data is collected)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            self._drop(connection)


def _ignore(future: asyncio.Future[Any]) -> None:
    """``ASKING``'s reply (``OK``): nothing to do with it."""


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            future = pending.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = RedisConnectionError(f"Connection lost: {exc or 'closed by server'}")
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(self.lost)

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        assert self.transport is not None
        future = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        self.transport.write(hiredis.pack_command(args))
        return future


class AsyncWire:
    """Async calls on one connection of the event loop it was made on (pipelined).

    ``timeout``: seconds a reply may take; then the connection is dropped (a late reply could
    otherwise answer the next call) and ``TimeoutError`` raised.
    """

    def __init__(self, endpoint: Endpoint, timeout: float | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._protocol: _Protocol | None = None
        self._opening: asyncio.Lock | None = None

    async def call(self, *args: Any, bounded: bool = True, asking: bool = False) -> Any:
        """Send one command and await its reply; ``bounded=False`` drops the wire's own read
        timeout for a caller that bounds the whole call itself (the enqueue deadline).
        ``asking``: send ``ASKING`` right before it (a Cluster's slot being imported)."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._open()
        if asking:  # written back to back with the command: nothing can come in between
            protocol.send(("ASKING",)).add_done_callback(_ignore)
        future = protocol.send(args)
        try:
            if self.timeout is None or not bounded:
                reply = await future
            else:
                async with asyncio.timeout(self.timeout):
                    reply = await future
        except TimeoutError:
            self._abort(protocol)
            raise RedisTimeoutError(f"Timeout reading from {self.endpoint.target}") from None
        except asyncio.CancelledError:
            # A reply still on its way would be read by the next caller: start afresh.
            self._abort(protocol)
            raise
        try:
            return _raise_if_error(reply)
        except ReadOnlyError:
            self._abort(protocol)  # a demoted primary: the next call finds the new one
            raise

    async def call_keyed(self, key: str, *args: Any, bounded: bool = True) -> Any:
        """:meth:`call` (``key`` routes a command on a Cluster: see :mod:`.cluster`)."""
        return await self.call(*args, bounded=bounded)

    async def run(
        self,
        script: Script,
        keys: list[str],
        args: list[Any],
        *,
        bounded: bool = True,
        asking: bool = False,
    ) -> Any:
        """Run a broker script (EVALSHA; loaded first when the server answers NOSCRIPT)."""
        evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self.call(*evalsha, bounded=bounded, asking=asking)
        except NoScriptError:
            await self.call("SCRIPT", "LOAD", script.source, bounded=bounded)
            return await self.call(*evalsha, bounded=bounded, asking=asking)

    async def _open(self) -> _Protocol:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            protocol = self._protocol
            if protocol is not None and protocol.lost is None:
                return protocol
            loop = asyncio.get_running_loop()
            endpoint = self.endpoint
            protocol = _Protocol()
            host, port = endpoint.host, endpoint.port
            try:
                async with asyncio.timeout(endpoint.connect_timeout):
                    if endpoint.locator is not None:
                        host, port = await endpoint.locator.locate()
                    if endpoint.path is not None:
                        await loop.create_unix_connection(lambda: protocol, endpoint.path)
                    else:
                        await loop.create_connection(
                            lambda: protocol,
                            host,
                            port,
                            ssl=endpoint.tls,
                            server_hostname=host if endpoint.tls else None,
                        )
                        assert protocol.transport is not None
                        raw = protocol.transport.get_extra_info("socket")
                        if raw is not None:  # TCP keepalive: a half-open connection is noticed
                            raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                    for command in endpoint.hello:  # AUTH, SELECT: within the same timeout
                        _raise_if_error(await protocol.send(command))
                    if endpoint.locator is not None:
                        role = _raise_if_error(await protocol.send(("ROLE",)))
                        endpoint.locator.check_role(role, host, port)
            except TimeoutError:
                self._abort(protocol)
                raise RedisTimeoutError(f"Timeout connecting to {endpoint.target}") from None
            except OSError as exc:
                self._abort(protocol)
                raise RedisConnectionError(
                    f"Error connecting to {endpoint.target}: {exc}"
                ) from None
            except BaseException:
                self._abort(protocol)
                raise
            self._protocol = protocol
            return protocol

    def _abort(self, protocol: _Protocol) -> None:
        if protocol.transport is not None:
            protocol.transport.abort()
        if self._protocol is protocol:
            self._protocol = None

    async def aclose(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
