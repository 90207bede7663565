"""The producing side of the Redis broker: enqueue from async code and from sync code.

Messages are encoded (and refused when bad) before anything is sent; one queue's messages go as
one script call over the caller's lean connection (its event loop's, or its thread's), several
queues' (or a first use of a queue) as one pipeline. A call has a total deadline,
``enqueue_timeout``; see :mod:`.broker`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from ...message import Message, encode_checked
from ..base import BrokerCounters
from . import scripts as redis_scripts
from .clients import AnyAsyncWire, AnySyncWire, Clients
from .cluster import ClusterAsyncWire, ClusterSyncWire
from .codec import fmt_time
from .keys import registry_key
from .scripts import Script, retrying, retrying_sync

Groups = dict[str, tuple[list[int], list[Any]]]
CHUNK = 1000
"""Messages per script call when an async caller sends one queue a big batch: the parts go
back to back on one connection, so the client packs the next while Redis runs the last (each
message is still written whole or not at all; a part is atomic, the batch as a whole is not)."""


class RedisProducerMixin:
    """Enqueue for :class:`~.broker.RedisMessageBroker` (which provides the rest)."""

    prefix: str
    max_message_size: int
    max_backoff: float
    enqueue_timeout: float
    wait_replicas: int
    replica_timeout: float
    _registered: set[str]
    _counters: BrokerCounters
    _clients: Clients | None

    @property
    def target(self) -> str:
        raise NotImplementedError

    def _open_clients(self) -> Clients:
        raise NotImplementedError

    def _base(self, queue: str) -> str:
        raise NotImplementedError

    def _declare(self, script: Script, bases: list[str]) -> list[str]:
        raise NotImplementedError

    async def enqueue(self, messages: Sequence[Message]) -> list[bool]:
        if not messages:
            return []
        groups, new_queues = self._groups(messages)
        clients = self._clients
        if clients is None:  # first use: may start the embedded Redis, off the loop
            clients = await asyncio.to_thread(self._open_clients)
        here = clients.here()
        acked: list[int] = []

        async def send() -> list[bytes]:
            replies = await write()
            if self.wait_replicas:
                acked[:] = await self._wait_for_replicas(here.wire, list(groups))
            return replies

        async def write() -> list[bytes]:
            if len(groups) == 1 and not new_queues:
                ((queue, (_, args)),) = groups.items()
                script = redis_scripts.script("enqueue")
                keys = self._declare(script, [self._base(queue)])
                # Bounded by the enqueue deadline below, not by the wire's read timeout too.
                parts = [
                    here.wire.run(script, keys, [args[0], *args[i : i + CHUNK * 3]], bounded=False)
                    for i in range(1, len(args), CHUNK * 3)
                ]
                if len(parts) == 1:
                    return [await parts[0]]
                # Sent back to back on the pipelined connection: Redis runs one part while the
                # next is packed and sent. Replies come in order (one character per message).
                done = await asyncio.gather(*parts, return_exceptions=True)
                joined = b""
                for reply in done:
                    if isinstance(reply, BaseException):
                        raise reply  # retried as a whole: parts already written answer '0'
                    joined += reply
                return [joined]
            calls, register = self._calls(groups, new_queues)
            if not clients.topology.is_standalone or self.wait_replicas:
                # On the lean connections (each call to its node on a Cluster; to the primary
                # the Sentinels name), all at once, and WAIT on the connection that wrote.
                return await _each(here.wire, calls, register)
            return await redis_scripts.run_many(here.client, "enqueue", calls, register)

        failures: list[BaseException] = []
        try:
            async with asyncio.timeout(self.enqueue_timeout):
                replies = await retrying(
                    "enqueue", send, self.target, self.max_backoff, failures=failures, producer=True
                )
        except TimeoutError:
            raise self._late("enqueue", failures) from None
        written = self._written(messages, groups, new_queues, replies)
        self._check_replicas(acked)
        return written

    async def _wait_for_replicas(self, wire: AnyAsyncWire, queues: list[str]) -> list[int]:
        """``WAIT`` on each node that took a write (the connection that wrote it): how many
        replicas acknowledged, per node."""
        bases = [self._base(q) for q in queues]
        if not isinstance(wire, ClusterAsyncWire):
            bases = bases[:1]  # one connection wrote them all
        ms = int(self.replica_timeout * 1000)
        waits = [wire.call_keyed(b, "WAIT", self.wait_replicas, ms, bounded=False) for b in bases]
        return [int(n) for n in await asyncio.gather(*waits)]

    def _check_replicas(self, acked: list[int]) -> None:
        """Raise unless the replicas asked for acknowledged the enqueue (a retry that wrote
        nothing new, its ids being there already, asks again for the earlier write)."""
        if not self.wait_replicas or min(acked) >= self.wait_replicas:
            return
        raise NotReplicatedError(
            f"enqueue: the job is on the primary of {self.target}, but only {min(acked)} of the "
            f"{self.wait_replicas} replica(s) asked for (wait_replicas) acknowledged it within "
            f"{self.replica_timeout:g}s, so a failover now could lose it. It was not removed: "
            "enqueueing the same job id again writes nothing while it waits or runs. Check the "
            "replicas (INFO replication) or lower REPID['WAIT_REPLICAS']."
        )

    def enqueue_sync(self, messages: Sequence[Message]) -> list[bool]:
        """:meth:`enqueue` for sync code: one round trip on the sync client, no event loop."""
        if not messages:
            return []
        groups, new_queues = self._groups(messages)
        clients = self._open_clients()

        acked: list[int] = []

        def send() -> list[bytes]:
            wire = clients.sync_wire()
            replies = write(wire)
            if self.wait_replicas:
                bases = [self._base(q) for q in groups]
                if not isinstance(wire, ClusterSyncWire):
                    bases = bases[:1]  # one socket wrote them all
                ms = int(self.replica_timeout * 1000)
                acked[:] = [
                    int(wire.call_keyed(b, "WAIT", self.wait_replicas, ms, timeout=left()))
                    for b in bases
                ]
            return replies

        def left() -> float:
            return deadline - time.monotonic()

        def write(wire: AnySyncWire) -> list[bytes]:
            if len(groups) == 1 and not new_queues:
                ((queue, (_, args)),) = groups.items()
                script = redis_scripts.script("enqueue")
                keys = self._declare(script, [self._base(queue)])
                return [wire.run(script, keys, args, deadline)]
            calls, register = self._calls(groups, new_queues)
            if not clients.topology.is_standalone or self.wait_replicas:
                # On the lean socket (of each node on a Cluster; of the primary the Sentinels
                # name), and WAIT on the socket that wrote.
                script = redis_scripts.script("enqueue")
                if register[1]:
                    wire.call_keyed(register[0], "SADD", register[0], *register[1], timeout=left())
                return [wire.run(script, keys, args, deadline) for keys, args in calls]
            return redis_scripts.run_many_sync(clients.sync(), "enqueue", calls, register)

        deadline = time.monotonic() + self.enqueue_timeout
        failures: list[BaseException] = []
        replies = retrying_sync(
            "enqueue",
            send,
            self.target,
            self.max_backoff,
            deadline,
            failures=failures,
            producer=True,
        )
        if replies is None:
            raise self._late("enqueue", failures)
        written = self._written(messages, groups, new_queues, replies)
        self._check_replicas(acked)
        return written

    def _groups(self, messages: Sequence[Message]) -> tuple[Groups, list[str]]:
        """Encode ``messages`` (refusing bad ones before anything is sent), grouped by queue."""
        now = time.time()
        groups: Groups = {}
        for index, message in enumerate(messages):
            body = encode_checked(message, self.max_message_size)
            positions, args = groups.setdefault(message.queue, ([], [0]))
            positions.append(index)
            # See lua/enqueue.lua: the priority, with run_at when that is still to come.
            run_at = message.run_at
            if run_at is not None and run_at > now:
                args += [message.id, f"{message.priority} {fmt_time(run_at)}", body]
            else:
                args += [message.id, message.priority, body]
        for positions, args in groups.values():
            if len(positions) > 1 and len(set(args[1::3])) < len(positions):
                args[0] = 1  # an id twice: the script keeps the first
        return groups, [q for q in groups if q not in self._registered]

    def _calls(
        self, groups: Groups, new_queues: list[str]
    ) -> tuple[list[tuple[list[str], list[Any]]], tuple[str, list[str]]]:
        script = redis_scripts.script("enqueue")
        calls = [(self._declare(script, [self._base(q)]), args) for q, (_, args) in groups.items()]
        return calls, (registry_key(self.prefix), new_queues)

    def _written(
        self, messages: Sequence[Message], groups: Groups, new_queues: list[str], replies: list[Any]
    ) -> list[bool]:
        self._registered.update(new_queues)
        written = [False] * len(messages)
        for (positions, _), reply in zip(groups.values(), replies, strict=True):
            # One byte per message: b"1" written, b"0" already there (see lua/enqueue.lua).
            for position, flag in zip(positions, bytes(reply), strict=True):
                written[position] = flag == 49
        self._counters.enqueued += sum(written)
        return written

    def _late(self, what: str, failures: list[BaseException]) -> ConnectionError:
        last = f" (last error: {failures[-1]})" if failures else ""
        return ConnectionError(
            f"Redis at {self.target} did not answer within {self.enqueue_timeout:g}s during "
            f"{what}{last}. Check that Redis is running, reachable and not overloaded (or raise "
            "REPID['ENQUEUE_TIMEOUT']); then retry. A message is written whole or not at all: "
            "if the request reached Redis before the deadline it may have been written."
        )


class NotReplicatedError(ConnectionError):
    """An enqueue with ``wait_replicas`` was written on the primary, but fewer replicas than
    asked acknowledged it in time (see :meth:`RedisProducerMixin._check_replicas`)."""


async def _each(
    wire: AnyAsyncWire,
    calls: list[tuple[list[str], list[Any]]],
    register: tuple[str, list[str]],
) -> list[Any]:
    """The enqueue calls (and the registry's SADD) on the lean connections, sent together: each
    on its node's on a Cluster, on the one connection to the primary otherwise (which a WAIT
    then follows)."""
    script = redis_scripts.script("enqueue")
    sends = [wire.run(script, keys, args, bounded=False) for keys, args in calls]
    if register[1]:
        sends.append(wire.call_keyed(register[0], "SADD", register[0], *register[1]))
    done = await asyncio.gather(*sends, return_exceptions=True)
    for reply in done:
        if isinstance(reply, BaseException):
            raise reply  # retried as a whole: calls already written answer '0'
    return done[: len(calls)]
