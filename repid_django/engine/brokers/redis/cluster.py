"""The broker's lean connections on a Redis (or Valkey) Cluster: one per node, routed by slot.

A command goes to the primary that serves the slot of its first key, as the slot map says. The
map is read with ``CLUSTER SLOTS`` from any node that answers (the URL's nodes, then the ones
the last map named) on first use, after a node failed (a failover moves its slots to a
replica) and after a ``MOVED`` reply (a slot changed owner). ``ASK`` (a slot being migrated,
whose key is already on the target) sends that one command to the target, after ``ASKING``.
Every key of a queue shares its hash tag, so each broker script runs on one node; a script
whose queue slot is being migrated gets ``TRYAGAIN`` (it declares several keys, and not all
of them are on one side yet) and is retried by the broker until the migration is over, so no
script ever sees half a queue.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .endpoint import Endpoint
from .scripts import Script
from .topology import Address
from .wire import AsyncWire, SyncWire

SLOTS = 16384
MAX_REDIRECTS = 8


def slot_of(key: str) -> int:
    return key_slot(key.encode())


class SlotMap:
    """Which primary serves each slot, and which nodes to ask for the map."""

    def __init__(self, seeds: list[Address]) -> None:
        self.seeds = seeds
        self.owners: list[Address | None] = [None] * SLOTS
        self.fresh = False
        self.lock = threading.Lock()

    def candidates(self) -> list[Address]:
        """Where to read the map: the primaries it named, then the URL's nodes."""
        known = dict.fromkeys(o for o in self.owners if o is not None)
        return [*known, *(s for s in self.seeds if s not in known)]

    def load(self, reply: Any, asked: Address) -> None:
        owners: list[Address | None] = [None] * SLOTS
        for entry in reply:
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
            address = (host or asked[0], int(primary[1]))  # "" or "?": the node asked
            if host == "?":
                address = asked
            owners[start : end + 1] = [address] * (end - start + 1)
        with self.lock:
            self.owners = owners
            self.fresh = True

    def owner(self, slot: int) -> Address | None:
        return self.owners[slot] if self.fresh else None

    def redirected(self, error: AskError) -> Address | None:
        """Where to send the command again: after ``MOVED`` (the slot lives there now, and
        others may have moved too: the whole map is read again) ``None``, the slot's owner;
        after ``ASK`` (the key is already on the slot's import target) that target."""
        target = (error.host, int(error.port))
        if not isinstance(error, MovedError):
            return target
        with self.lock:
            self.owners[error.slot_id] = target
            self.fresh = False
        return None

    def stale(self) -> None:
        self.fresh = False


NODE_FAILED = (RedisConnectionError, RedisTimeoutError, OSError)


def _looping(slot: int) -> ResponseError:
    return ResponseError(f"slot {slot}: more than {MAX_REDIRECTS} redirections; retry later")


def _failed(errors: list[str]) -> RedisConnectionError:
    return RedisConnectionError(
        f"no node of the Redis Cluster answered CLUSTER SLOTS ({'; '.join(errors)}); check the "
        "hosts of the redis+cluster:// URL"
    )


class _Nodes[W: (SyncWire, AsyncWire)]:
    """A connection per node of the Cluster, made on first use, and the slot map."""

    def __init__(
        self, endpoint: Endpoint, seeds: list[Address], make: Callable[[Endpoint], W]
    ) -> None:
        self.endpoint = endpoint
        self.map = SlotMap(seeds)
        self._make: Callable[[Endpoint], W] = make
        self._nodes: dict[Address, W] = {}

    def node(self, address: Address) -> W:
        wire = self._nodes.get(address)
        if wire is None:
            wire = self._nodes[address] = self._make(self.endpoint.at(*address))
        return wire

    def _unserved(self, slot: int) -> RedisConnectionError:
        return RedisConnectionError(f"no node of the Cluster serves slot {slot} now")


class ClusterSyncWire(_Nodes[SyncWire]):
    """:class:`~.wire.SyncWire` calls on a Cluster (a socket per node and thread)."""

    def __init__(self, endpoint: Endpoint, seeds: list[Address], timeout: float) -> None:
        super().__init__(endpoint, seeds, lambda at: SyncWire(at, timeout))

    def _refresh(self) -> None:
        errors: list[str] = []
        for address in self.map.candidates():
            try:
                self.map.load(self.node(address).call("CLUSTER", "SLOTS"), address)
                return
            except (RedisError, OSError) as exc:
                errors.append(f"{address[0]}:{address[1]}: {exc}")
        raise _failed(errors)

    def _owner(self, slot: int) -> SyncWire:
        owner = self.map.owner(slot)
        if owner is None:
            self._refresh()
            owner = self.map.owner(slot)
            if owner is None:
                raise self._unserved(slot)
        return self.node(owner)

    def _routed(self, key: str, send: Callable[[SyncWire, bool], Any]) -> Any:
        slot, asking = slot_of(key), None
        for _ in range(MAX_REDIRECTS):
            wire = self._owner(slot) if asking is None else self.node(asking)
            try:
                return send(wire, asking is not None)
            except AskError as exc:  # MOVED too (a subclass)
                asking = self.map.redirected(exc)
            except NODE_FAILED:
                self.map.stale()  # a node failed: its slots may have a new owner
                raise
        raise _looping(slot)

    def call_keyed(self, key: str, *args: Any, timeout: float | None = None) -> Any:
        """Send one command to the node that serves ``key``."""

        def send(wire: SyncWire, asking: bool) -> Any:
            if asking:
                wire.call("ASKING", timeout=timeout)
            return wire.call(*args, timeout=timeout)

        return self._routed(key, send)

    def run(
        self, script: Script, keys: list[str], args: list[Any], deadline: float | None = None
    ) -> Any:
        def send(wire: SyncWire, asking: bool) -> Any:
            if asking:
                wire.call("ASKING")
            return wire.run(script, keys, args, deadline)

        return self._routed(keys[0], send)

    def close(self) -> None:
        for wire in self._nodes.values():
            wire.close()


class ClusterAsyncWire(_Nodes[AsyncWire]):
    """:class:`~.wire.AsyncWire` calls on a Cluster (a pipelined connection per node)."""

    def __init__(self, endpoint: Endpoint, seeds: list[Address], timeout: float | None) -> None:
        super().__init__(endpoint, seeds, lambda at: AsyncWire(at, timeout))

    async def _refresh(self) -> None:
        errors: list[str] = []
        for address in self.map.candidates():
            try:
                self.map.load(await self.node(address).call("CLUSTER", "SLOTS"), address)
                return
            except (RedisError, OSError) as exc:
                errors.append(f"{address[0]}:{address[1]}: {exc}")
        raise _failed(errors)

    async def _owner(self, slot: int) -> AsyncWire:
        owner = self.map.owner(slot)
        if owner is None:
            await self._refresh()
            owner = self.map.owner(slot)
            if owner is None:
                raise self._unserved(slot)
        return self.node(owner)

    async def _routed(self, key: str, send: Callable[[AsyncWire, bool], Awaitable[Any]]) -> Any:
        slot, asking = slot_of(key), None
        for _ in range(MAX_REDIRECTS):
            wire = await self._owner(slot) if asking is None else self.node(asking)
            try:
                return await send(wire, asking is not None)
            except AskError as exc:  # MOVED too (a subclass)
                asking = self.map.redirected(exc)
            except NODE_FAILED:
                self.map.stale()  # a node failed: its slots may have a new owner
                raise
        raise _looping(slot)

    async def call_keyed(self, key: str, *args: Any, bounded: bool = True) -> Any:
        """Send one command to the node that serves ``key``."""
        return await self._routed(
            key, lambda wire, asking: wire.call(*args, bounded=bounded, asking=asking)
        )

    async def run(
        self, script: Script, keys: list[str], args: list[Any], *, bounded: bool = True
    ) -> Any:
        def send(wire: AsyncWire, asking: bool) -> Awaitable[Any]:
            return wire.run(script, keys, args, bounded=bounded, asking=asking)

        return await self._routed(keys[0], send)

    async def aclose(self) -> None:
        for wire in list(self._nodes.values()):
            await wire.aclose()
