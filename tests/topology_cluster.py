"""A real Redis Cluster on loopback for the tests: N primaries (and replicas), live slot
migration, primary failover.

The cluster is built the way ``redis-cli --cluster create`` builds it, with plain commands
(no interactive tool): distinct config epochs, ``CLUSTER ADDSLOTS`` for each primary's even
share of the 16384 slots, ``CLUSTER MEET``, ``CLUSTER REPLICATE``; then a bounded wait until
every node says ``cluster_state:ok`` and all agree on the slot map. ``cluster-node-timeout``
is small (1000 ms by default) so a killed primary's replica takes over in a few seconds.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis.crc import key_slot

from .redis_server import free_port
from .topology_base import HOST, Address, Topology, info_field, wait_until

SLOTS = 16384
BUS_OFFSET = 10000
# (first slot, last slot, primary port, replica ports) per range, as CLUSTER SLOTS says.
SlotMap = list[tuple[int, int, int, tuple[int, ...]]]


def cluster_port() -> int:
    """A free port whose cluster bus port (10000 above it, the only choice Redis 6.2 has) is
    free and valid too: an ephemeral port above 55535 would have no bus port."""
    while True:
        port = free_port()
        if port + BUS_OFFSET <= 65535:
            with socket.socket() as sock:
                try:
                    sock.bind((HOST, port + BUS_OFFSET))
                except OSError:
                    continue
            return port


def slot_of(key: str | bytes) -> int:
    """The hash slot of a key (its ``{hash tag}`` if it has one)."""
    return key_slot(key.encode() if isinstance(key, str) else key)


class ClusterServers(Topology):
    """``primaries`` cluster primaries, each with ``replicas`` replicas, on free loopback ports.

    ``with ClusterServers() as cluster:`` starts it and waits until it is ready; ``url`` is the
    broker's ``redis+cluster://`` URL. ``binary`` defaults to the suite's redis-server.
    ``restart(port)`` brings a killed node back with its ``nodes.conf``: it rejoins, and a
    former primary whose slots went to its replica comes back as that node's replica.
    """

    def __init__(
        self,
        primaries: int = 3,
        *,
        replicas: int = 0,
        binary: str | None = None,
        node_timeout: int = 1000,
        require_full_coverage: bool = True,
        appendonly: bool = False,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(binary, password=password, appendonly=appendonly, timeout=timeout)
        self.primary_count = primaries
        self.replica_count = replicas
        self.node_timeout = node_timeout
        self.require_full_coverage = require_full_coverage
        self.ids: dict[int, str] = {}

    def _build(self) -> None:
        options = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout),
            "--cluster-require-full-coverage", "yes" if self.require_full_coverage else "no",
            # A replica takes over however stale its copy: tests kill primaries at will.
            "--cluster-replica-validity-factor", "0",
        ]  # fmt: skip
        total = self.primary_count * (1 + self.replica_count)
        ports = [self._spawn(options, cluster_port()).port for _ in range(total)]
        for epoch, port in enumerate(ports, start=1):
            self.ids[port] = self.ask(port, "CLUSTER", "MYID")
            self.ask(port, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        primaries = ports[: self.primary_count]
        for index, port in enumerate(primaries):
            first = index * SLOTS // self.primary_count
            last = (index + 1) * SLOTS // self.primary_count
            self.ask(port, "CLUSTER", "ADDSLOTS", *range(first, last))
        for port in ports[1:]:
            self.ask(ports[0], "CLUSTER", "MEET", HOST, port)
        wait_until(lambda: all(self._knows_all(port) for port in ports), self.timeout, "MEET")
        for index, port in enumerate(ports[self.primary_count :]):
            primary = primaries[index % self.primary_count]
            self.ask(port, "CLUSTER", "REPLICATE", self.ids[primary])
        self.wait_ready()

    def _knows_all(self, port: int) -> bool:
        lines = str(self.ask(port, "CLUSTER", "NODES")).strip().splitlines()
        return len(lines) == len(self.ids) and not any("handshake" in line for line in lines)

    @property
    def startup_nodes(self) -> list[Address]:
        return [(HOST, port) for port in self.servers]

    @property
    def url(self) -> str:
        """``redis+cluster://[:password@]127.0.0.1:p1,127.0.0.1:p2,...`` (every node)."""
        return self._url("redis+cluster", self.startup_nodes)

    def slot_map(self, port: int | None = None) -> SlotMap:
        """The slot map as the node on ``port`` (default: the first live node) sees it."""
        port = port if port is not None else self.live_ports()[0]
        ranges = self.ask(port, "CLUSTER", "SLOTS")
        return sorted(
            (int(first), int(last), int(primary[1]), tuple(sorted(int(r[1]) for r in others)))
            for first, last, primary, *others in ranges
        )

    def node_for_slot(self, slot: int) -> Address:
        """The primary that owns ``slot``."""
        for first, last, primary, _replicas in self.slot_map():
            if first <= slot <= last:
                return HOST, primary
        raise LookupError(f"slot {slot} is not served")

    def node_for_key(self, key: str | bytes) -> Address:
        return self.node_for_slot(slot_of(key))

    def primaries(self) -> list[Address]:
        """The primaries that own slots, in slot order, as the cluster sees them now."""
        ports = dict.fromkeys(primary for _f, _l, primary, _r in self.slot_map())
        return [(HOST, port) for port in ports]

    def replicas(self) -> list[Address]:
        """The live replicas that the slot map lists."""
        ports = {port for *_range, replicas in self.slot_map() for port in replicas}
        return [(HOST, port) for port in sorted(ports)]

    def ready(self) -> bool:
        """Every live node says ``cluster_state:ok``, all see the same slot map, all 16384
        slots are served by live primaries, and every live replica's link is up."""
        ports = self.live_ports()
        maps = [self.slot_map(port) for port in ports]
        if any(m != maps[0] for m in maps):
            return False
        served = sum(
            last - first + 1 for first, last, primary, _r in maps[0] if self.alive(primary)
        )
        listed = {port for *_slots, primary, replicas in maps[0] for port in (primary, *replicas)}
        if served != SLOTS or listed != set(ports):
            return False
        for port in ports:
            if info_field(port, "cluster_state", "CLUSTER INFO", self.password) != "ok":
                return False
            role = info_field(port, "role", password=self.password)
            link = info_field(port, "master_link_status", password=self.password)
            if role == "slave" and link != "up":
                return False
        return True

    def kill_primary(self, port: int, sig: int = signal.SIGKILL) -> float:
        """Kill a primary and wait until its replica has taken over its slots and the cluster
        is ready again: the seconds from the kill to then (the failover time)."""
        self.kill(port, sig)
        return self.wait_ready()

    def failover(self, replica_port: int) -> float:
        """A manual (graceful) ``CLUSTER FAILOVER`` on a replica: it swaps roles with its
        primary without losing writes; the seconds until the cluster is ready again."""
        began = time.monotonic()
        self.ask(replica_port, "CLUSTER", "FAILOVER")
        wait_until(
            lambda: info_field(replica_port, "role", password=self.password) == "master",
            self.timeout,
            "manual failover",
        )
        self.wait_ready()
        return time.monotonic() - began

    @contextmanager
    def migrating(self, slot: int, dest_port: int) -> Iterator[SlotMigration]:
        """A live migration of ``slot`` to ``dest_port`` that the caller drives step by step:
        the slot is MIGRATING/IMPORTING inside the block (clients get ASK redirections); the
        block moves keys with ``move(step)``; leaving it moves the rest and hands the slot over
        (clients get MOVED)."""
        migration = SlotMigration(self, slot, dest_port)
        migration.begin()
        try:
            yield migration
        finally:  # even when the block fails: never leave a module's cluster half-migrated
            while migration.move():
                pass
            migration.finish()

    def migrate_slot(
        self, slot: int, dest_port: int, *, step: int = 100, pause: float = 0.0
    ) -> int:
        """Migrate ``slot`` to the primary on ``dest_port`` while clients keep using it:
        ``step`` keys a ``MIGRATE``, ``pause`` seconds between batches (to widen the window in
        which clients are redirected). The number of keys moved."""
        moved = 0
        with self.migrating(slot, dest_port) as migration:
            while count := migration.move(step):
                moved += count
                time.sleep(pause)
        return moved

    def migrate_key_slot(self, key: str | bytes, dest_port: int, **options: Any) -> int:
        """``migrate_slot`` for the slot of ``key``."""
        return self.migrate_slot(slot_of(key), dest_port, **options)


class SlotMigration:
    """One live slot migration, in the order the Redis Cluster spec gives: IMPORTING on the
    target, MIGRATING on the source, ``MIGRATE ... KEYS`` in batches from ``CLUSTER
    GETKEYSINSLOT``, then ``CLUSTER SETSLOT <slot> NODE <target>`` on the target, the source
    and the other primaries, and a bounded wait until every node agrees."""

    def __init__(self, cluster: ClusterServers, slot: int, dest_port: int) -> None:
        self.cluster = cluster
        self.slot = slot
        self.dest = dest_port
        self.source = cluster.node_for_slot(slot)[1]

    def begin(self) -> None:
        if self.source == self.dest:
            return
        source_id, dest_id = self.cluster.ids[self.source], self.cluster.ids[self.dest]
        self.cluster.ask(self.dest, "CLUSTER", "SETSLOT", self.slot, "IMPORTING", source_id)
        self.cluster.ask(self.source, "CLUSTER", "SETSLOT", self.slot, "MIGRATING", dest_id)

    def move(self, step: int = 100) -> int:
        """Move up to ``step`` of the slot's keys to the target; how many it moved (0: none
        is left on the source)."""
        if self.source == self.dest:
            return 0
        keys = self.cluster.ask(self.source, "CLUSTER", "GETKEYSINSLOT", self.slot, step)
        if keys:
            auth = ["AUTH", self.cluster.password] if self.cluster.password else []
            self.cluster.ask(
                self.source, "MIGRATE", HOST, self.dest, "", 0, 5000, *auth, "KEYS", *keys
            )
        return len(keys)

    def finish(self) -> None:
        if self.source == self.dest:
            return
        dest_id = self.cluster.ids[self.dest]
        others = [p for _h, p in self.cluster.primaries() if p not in (self.source, self.dest)]
        for port in [self.dest, self.source, *others]:
            self.cluster.ask(port, "CLUSTER", "SETSLOT", self.slot, "NODE", dest_id)
        wait_until(
            lambda: self.cluster.ready() and self.cluster.node_for_slot(self.slot)[1] == self.dest,
            self.cluster.timeout,
            f"slot {self.slot} handed over",
        )
