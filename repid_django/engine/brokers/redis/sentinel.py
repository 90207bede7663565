"""Finding the primary through Redis Sentinel, for the broker's own connections.

Each new connection asks the Sentinels (``SENTINEL GET-MASTER-ADDR-BY-NAME``), the last one
that answered first, and then checks with ``ROLE`` that the server it reached is a primary:
during a failover a Sentinel can still name the old one for a moment, and a primary demoted to
a replica answers ``READONLY`` to writes. Either way the connection is dropped and the broker's
retry opens a new one, which asks again; so producers and workers find the new primary by
themselves once the Sentinels have promoted it. A connection blocked in its idle wait (BLPOP)
is closed by the Sentinels when they reconfigure its server (``CLIENT KILL TYPE normal``), or
reaches its bounded timeout, and reconnects the same way.

redis-py's own clients (admin reads, the lease keeper) use ``redis.sentinel`` with the same
addresses and credentials; it follows a failover the same way.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from typing import Any

import hiredis
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError

from .topology import Address, Topology


class NotPrimaryError(RedisConnectionError):
    """The server a Sentinel named is not (or no longer) the primary: ask again."""


class SentinelLocator:
    """The current primary of one Sentinel service (see the module docstring)."""

    def __init__(self, topology: Topology, timeout: float, tls: ssl.SSLContext | None) -> None:
        self.service = topology.service
        self._sentinels: list[Address] = list(topology.nodes)
        self._timeout = timeout
        self._tls = tls
        self._lock = threading.Lock()
        hello: list[tuple[Any, ...]] = []
        if topology.sentinel_password is not None:
            user, password = topology.sentinel_username, topology.sentinel_password
            hello.append(("AUTH", user, password) if user else ("AUTH", password))
        self._hello = hello

    def __repr__(self) -> str:
        return f"SentinelLocator({self.service!r}, sentinels={self._sentinels!r})"

    def _ask(self) -> list[tuple[Any, ...]]:
        return [*self._hello, ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)]

    def _found(self, sentinel: Address, reply: Any, errors: list[str]) -> Address | None:
        if isinstance(reply, hiredis.ReplyError):
            errors.append(f"{sentinel[0]}:{sentinel[1]}: {reply}")
            return None
        if not reply:
            errors.append(f"{sentinel[0]}:{sentinel[1]} knows no service {self.service!r}")
            return None
        with self._lock:  # the one that answered is asked first next time
            if sentinel in self._sentinels:
                self._sentinels.remove(sentinel)
            self._sentinels.insert(0, sentinel)
        host, port = reply
        return (host.decode() if isinstance(host, bytes) else str(host)), int(port)

    def _failed(self, errors: list[str]) -> RedisConnectionError:
        found = "; ".join(errors)
        if any(code in found for code in ("WRONGPASS", "NOAUTH", "invalid password")):
            return AuthenticationError(
                f"WRONGPASS: the Sentinels refused their password ({found}): fix "
                "sentinel_password (and sentinel_username) in the redis+sentinel:// URL"
            )
        return RedisConnectionError(
            f"no Sentinel named a primary for {self.service!r} ({found}). Check that the "
            "Sentinels run and monitor that service (the name after the hosts in the "
            "redis+sentinel:// URL)."
        )

    def locate_sync(self) -> Address:
        """Ask the Sentinels in turn; the first that names a primary wins."""
        errors: list[str] = []
        with self._lock:
            sentinels = list(self._sentinels)
        for sentinel in sentinels:
            try:
                replies = _ask_sync(sentinel, self._ask(), self._timeout, self._tls)
            except (OSError, RedisError) as exc:
                errors.append(f"{sentinel[0]}:{sentinel[1]}: {exc}")
                continue
            if (found := self._found(sentinel, _last_error_or(replies), errors)) is not None:
                return found
        raise self._failed(errors)

    async def locate(self) -> Address:
        """:meth:`locate_sync` for asyncio."""
        errors: list[str] = []
        with self._lock:
            sentinels = list(self._sentinels)
        for sentinel in sentinels:
            try:
                async with asyncio.timeout(self._timeout):
                    replies = await _ask_async(sentinel, self._ask(), self._tls)
            except (OSError, RedisError, TimeoutError) as exc:
                errors.append(f"{sentinel[0]}:{sentinel[1]}: {exc or type(exc).__name__}")
                continue
            if (found := self._found(sentinel, _last_error_or(replies), errors)) is not None:
                return found
        raise self._failed(errors)

    def check_role(self, role: Any, host: str, port: int) -> None:
        """Refuse a connection to a server that is not a primary (``ROLE``'s reply)."""
        kind = role[0] if isinstance(role, list) and role else role
        if kind not in (b"master", "master"):
            raise NotPrimaryError(
                f"{host}:{port}, named by the Sentinels as the primary of {self.service!r}, "
                f"is a {kind!r} (a failover is under way); asking again"
            )


def _last_error_or(replies: list[Any]) -> Any:
    """The first error reply (AUTH refused), else the last reply (the Sentinel's answer)."""
    for reply in replies:
        if isinstance(reply, hiredis.ReplyError):
            return reply
    return replies[-1]


def _ask_sync(
    address: Address, commands: list[tuple[Any, ...]], timeout: float, tls: ssl.SSLContext | None
) -> list[Any]:
    """Send ``commands`` to a Sentinel on a short-lived socket; their replies."""
    with socket.create_connection(address, timeout=timeout) as raw:
        sock = tls.wrap_socket(raw, server_hostname=address[0]) if tls is not None else raw
        sock.sendall(b"".join(hiredis.pack_command(c) for c in commands))
        reader, replies = hiredis.Reader(), list[Any]()
        while len(replies) < len(commands):
            data = sock.recv(65536)
            if not data:
                raise RedisConnectionError("connection closed by the Sentinel")
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                replies.append(reply)
        return replies


async def _ask_async(
    address: Address, commands: list[tuple[Any, ...]], tls: ssl.SSLContext | None
) -> list[Any]:
    """:func:`_ask_sync` for asyncio (the caller bounds it)."""
    host, port = address
    reader, writer = await asyncio.open_connection(
        host, port, ssl=tls, server_hostname=host if tls is not None else None
    )
    try:
        writer.write(b"".join(hiredis.pack_command(c) for c in commands))
        parser, replies = hiredis.Reader(), list[Any]()
        while len(replies) < len(commands):
            data = await reader.read(65536)
            if not data:
                raise RedisConnectionError("connection closed by the Sentinel")
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                replies.append(reply)
        return replies
    finally:
        writer.close()
