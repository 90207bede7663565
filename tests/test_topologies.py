"""The loopback Cluster and Sentinel helpers (``tests/topologies.py``) against real servers:
they come up ready, slots move live with clients following ASK and MOVED, and a killed or
failed-over primary is replaced within a bound that is measured and printed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import AskError, MovedError
from redis.sentinel import Sentinel

from .topologies import (
    SERVICE,
    ClusterServers,
    SentinelServers,
    cluster_servers,
    sentinel_servers,
    slot_of,
)

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterServers]:
    """One 3-primary, 3-replica cluster for the module; each test leaves it ready."""
    with cluster_servers(replicas=1) as started:
        yield started


def cluster_client(cluster: ClusterServers) -> RedisCluster:
    nodes = [ClusterNode(host, port) for host, port in cluster.startup_nodes]  # type: ignore[no-untyped-call]
    return RedisCluster(startup_nodes=nodes, decode_responses=True)


def test_cluster_covers_every_slot_and_spreads_hash_tags(cluster: ClusterServers) -> None:
    slot_map = cluster.slot_map()
    assert sum(last - first + 1 for first, last, _p, _r in slot_map) == 16384
    assert len(cluster.primaries()) == 3
    assert len(cluster.replicas()) == 3
    assert all(replicas for *_slots, replicas in slot_map)
    assert cluster.url == "redis+cluster://" + ",".join(
        f"127.0.0.1:{port}" for _host, port in cluster.startup_nodes
    )
    owners = {cluster.node_for_key(f"{{{tag}}}:x") for tag in ("a", "b", "c", "d", "e")}
    assert len(owners) > 1
    client = cluster_client(cluster)
    try:
        for tag in ("a", "b", "c"):
            client.set(f"{{{tag}}}:x", tag)
            port = cluster.node_for_key(f"{{{tag}}}:x")[1]
            assert cluster.ask(port, "GET", f"{{{tag}}}:x") == tag
    finally:
        client.close()


@pytest.mark.slow
def test_migrate_slot_while_clients_read_and_write(cluster: ClusterServers) -> None:
    """Keys move batch by batch while a thread keeps writing and reading the slot: ASK inside
    the migration, MOVED after it, and no client operation fails or loses a key."""
    key = "{mig}:0"
    slot = slot_of(key)
    source = cluster.node_for_slot(slot)[1]
    dest = next(port for _host, port in cluster.primaries() if port != source)
    client = cluster_client(cluster)
    for index in range(100):
        client.set(f"{{mig}}:{index}", index)
    written: list[str] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def load() -> None:
        worker = cluster_client(cluster)
        count = 0
        try:
            while not done.is_set():
                name = f"{{mig}}:w{count}"
                worker.set(name, count)
                written.append(name)
                assert worker.get(name) == str(count)
                assert worker.get(f"{{mig}}:{count % 100}") == str(count % 100)
                count += 1
        except BaseException as error:  # the test thread reports it
            errors.append(error)
        finally:
            worker.close()

    thread = threading.Thread(target=load)
    thread.start()
    try:
        with cluster.migrating(slot, dest) as migration:
            while not (gone := [i for i in range(100) if not _on(cluster, source, i)]):
                assert migration.move(step=10)
            moved = str(gone[0])
            with pytest.raises(AskError):
                cluster.ask(source, "GET", f"{{mig}}:{moved}")
            assert client.get(f"{{mig}}:{moved}") == moved  # redis-py follows the ASK
            while migration.move(step=5):
                time.sleep(0.02)
        with pytest.raises(MovedError):
            cluster.ask(source, "GET", key)
        assert cluster.migrate_key_slot(key, source, step=20) > 100  # and back, in one call
    finally:
        done.set()
        thread.join(10)
    assert not errors, errors
    assert len(written) > 10
    assert cluster.node_for_slot(slot) == ("127.0.0.1", source)
    assert cluster.ask(source, "CLUSTER", "COUNTKEYSINSLOT", slot) == 100 + len(written)
    assert all(client.get(name) is not None for name in written)
    client.close()


def _on(cluster: ClusterServers, port: int, index: int) -> bool:
    """Whether the source still has the key (a migrating source answers ASK for one it has
    given away)."""
    try:
        return bool(cluster.ask(port, "EXISTS", f"{{mig}}:{index}"))
    except AskError:
        return False


@pytest.mark.slow
def test_killed_cluster_primary_is_replaced_by_its_replica(cluster: ClusterServers) -> None:
    client = cluster_client(cluster)
    key = "{failover}:k"
    client.set(key, "kept")
    owner = cluster.node_for_key(key)[1]
    assert cluster.ask(owner, "WAIT", 1, 5000) == 1  # the replica has the write
    took = cluster.kill_primary(owner)
    print(f"cluster failover after SIGKILL of a primary: {took:.2f}s")
    assert took < 10
    assert cluster.node_for_key(key)[1] != owner
    assert client.get(key) == "kept"  # MOVED followed to the promoted replica
    client.set(key, "after")
    rejoined = cluster.restart(owner)
    print(f"killed primary rejoined as a replica: {rejoined:.2f}s")
    assert ("127.0.0.1", owner) in cluster.replicas()
    assert client.get(key) == "after"
    client.close()


def test_manual_cluster_failover_swaps_primary_and_replica(cluster: ClusterServers) -> None:
    primary = cluster.node_for_slot(0)[1]
    replica = next(
        r for first, _l, p, replicas in cluster.slot_map() if first == 0 for r in replicas
    )
    took = cluster.failover(replica)
    print(f"manual cluster failover: {took:.2f}s")
    assert cluster.node_for_slot(0)[1] == replica
    assert ("127.0.0.1", primary) in cluster.replicas()


def sentinel_master(setup: SentinelServers) -> redis.Redis:
    """redis-py's client for whichever node the sentinels name the primary (it asks them
    again on each new connection)."""
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        setup.sentinels,
        sentinel_kwargs={"password": setup.sentinel_password, "socket_timeout": 2.0},
        password=setup.password,
        socket_timeout=2.0,
    )
    master: redis.Redis = sentinel.master_for(SERVICE, decode_responses=True)  # type: ignore[no-untyped-call]
    return master


@pytest.mark.slow
def test_sentinel_failover_is_followed_by_master_for() -> None:
    with sentinel_servers() as setup:
        assert (
            setup.url
            == "redis+sentinel://"
            + ",".join(f"127.0.0.1:{port}" for _host, port in setup.sentinels)
            + f"/{SERVICE}/0"
        )
        old = setup.primary()
        master = sentinel_master(setup)
        master.set("k", "before")
        began = time.monotonic()
        promoted = setup.failover()
        print(
            f"sentinel failover: new primary in {promoted:.2f}s, "
            f"old one a replica of it in {time.monotonic() - began:.2f}s"
        )
        assert promoted < 5
        new = setup.primary()
        assert new != old
        assert setup.ask(old[1], "ROLE")[0] == "slave"
        master.set("k", "after")  # the old connection fails over to the new primary
        assert master.get("k") == "after"
        assert int(master.info("server")["tcp_port"]) == new[1]


@pytest.mark.slow
def test_sentinel_kill_primary_promotes_the_replica_with_passwords() -> None:
    with sentinel_servers(password="data-pw", sentinel_password="sentinel-pw") as setup:
        assert setup.url.startswith("redis+sentinel://:data-pw@127.0.0.1:")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=setup.sentinels[0][1]).ping()
        master = sentinel_master(setup)
        master.set("k", "kept")
        old = setup.primary()[1]
        assert setup.ask(old, "WAIT", 1, 5000) == 1
        took = setup.kill_primary()
        print(f"sentinel promotion after SIGKILL of the primary: {took:.2f}s")
        assert took < 10
        assert master.get("k") == "kept"
        rejoined = setup.restart(old)
        print(f"killed primary back as a replica: {rejoined:.2f}s")
        # (A primary that stalls for down_after_ms on a loaded machine is failed over for real:
        # the logs tell whether that is what happened.)
        assert setup.primary()[1] != old, setup.logs()
        assert setup.ask(old, "ROLE")[0] == "slave"


def test_stop_kills_every_process_and_removes_the_dirs() -> None:
    setup = SentinelServers(sentinels=1, quorum=1, replicas=0).start()
    sentinel = setup.sentinels[0][1]
    setup.kill_sentinel(sentinel)
    assert setup.restart_sentinel(sentinel) < 5
    processes = [server.process for server in setup.servers.values()]
    processes += list(setup.sentinel_processes.values())
    directories = [server.directory for server in setup.servers.values()]
    directories += list(setup.sentinel_dirs.values())
    setup.stop()
    assert all(process is not None and process.poll() is not None for process in processes)
    assert not any(directory.exists() for directory in directories)
