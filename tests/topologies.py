"""Real Redis Cluster and Sentinel topologies on loopback, for broker and fault tests.

The helpers live in ``tests/topology_cluster.py`` (``ClusterServers``, ``SlotMigration``,
``slot_of``) and ``tests/topology_sentinel.py`` (``SentinelServers``) on the shared lifecycle
of ``tests/topology_base.py``; this module is the one to import from. Both are context
managers that start real server processes (the suite's redis-server by default, see
``tests/redis_server.py``; pass ``binary=valkey_binary()`` or ``redis62_binary()`` for the
others), wait with bounds until the topology is ready, and kill everything on exit (and at
interpreter exit, for what a failed test left running)::

    with ClusterServers(replicas=1) as cluster:
        broker = RedisMessageBroker(cluster.url)             # redis+cluster://127.0.0.1:p1,...
        owner = cluster.node_for_key("{q}:stream")[1]
        other = next(p for _h, p in cluster.primaries() if p != owner)
        cluster.migrate_key_slot("{q}:stream", other, step=5, pause=0.05)  # ASK, then MOVED
        cluster.kill_primary(other)                          # its replica takes over: seconds

    with SentinelServers(password="pw") as setup:           # redis+sentinel://:pw@.../mymaster/0
        setup.failover()                                     # or setup.kill_primary()

Fixtures are plain context managers (``cluster_servers``, ``sentinel_servers``) so a test
module can give them the scope it wants.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .topology_base import HOST, Address, wait_until
from .topology_cluster import ClusterServers, SlotMigration, slot_of
from .topology_sentinel import SERVICE, SentinelServers

__all__ = [
    "HOST",
    "SERVICE",
    "Address",
    "ClusterServers",
    "SentinelServers",
    "SlotMigration",
    "cluster_servers",
    "sentinel_servers",
    "slot_of",
    "wait_until",
]


@contextmanager
def cluster_servers(**options: Any) -> Iterator[ClusterServers]:
    """A started ``ClusterServers(**options)`` for the block (a fixture's body: ``with
    cluster_servers(replicas=1) as cluster: yield cluster``)."""
    with ClusterServers(**options) as cluster:
        yield cluster


@contextmanager
def sentinel_servers(**options: Any) -> Iterator[SentinelServers]:
    """A started ``SentinelServers(**options)`` for the block."""
    with SentinelServers(**options) as setup:
        yield setup
