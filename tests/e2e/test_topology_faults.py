"""Failovers and slot migrations under load, on real Sentinel sets and Clusters on loopback.

Each test streams jobs (``topology_flow.Producer``) through two worker processes while it
breaks the topology: ``SENTINEL FAILOVER``, a SIGKILL of the primary (Sentinel and Cluster),
a live slot migration of the queue's slot. The run log goes to the standalone server, so the
tally of what was lost (acknowledged, never run) and repeated is taken outside the topology.
What asynchronous replication can lose is measured and printed; with ``wait_replicas=1`` an
acknowledged enqueue is never lost, and that is asserted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from repid_django.engine.job import Job

from ..redis_server import RedisServer
from ..topologies import ClusterServers, SentinelServers, slot_of
from .test_redis_faults import Workers, wait_for
from .topology_flow import Producer, RunLog, Tally, settle

pytestmark = [pytest.mark.slow, pytest.mark.redis]

RESUME_BOUND = 12.0
"""Seconds from a primary's death to the first new job done: failure detection (2 s down-after,
1 s node timeout), the promotion, then one step of the retry back-off (at most 1 s)."""


@pytest.fixture
def log(redis_server: RedisServer, key_prefix: str) -> Iterator[RunLog]:
    client = redis_server.client()
    yield RunLog(client, key_prefix)
    client.delete(f"{key_prefix}:{{e2e}}:log", f"{key_prefix}:{{e2e}}:runs")
    client.close()


def start_workers(url: str, prefix: str, tmp: Path, log_url: str) -> Workers:
    pool = Workers(url, prefix, tmp)
    for _ in range(2):
        pool.spawn("--concurrency", "20", "--log-url", log_url)
    return pool


def under_load(
    url: str,
    prefix: str,
    log: RunLog,
    fault: Callable[[], object],
    *,
    wait_replicas: int = 0,
    heal: Callable[[], object] | None = None,
) -> Tally:
    """Stream jobs, apply ``fault()`` once the flow runs (then ``heal()``), go on until 300
    more enqueues were acknowledged; the tally once every acknowledged job has run (or 30 s)."""
    with Producer(url, prefix, wait_replicas=wait_replicas) as producer:
        ledger = producer.ledger
        wait_for(lambda: len(log.ended()) >= 300, 30, "the flow started")
        fault()  # returns once the topology serves again (enqueues and jobs go on meanwhile)
        if heal is not None:
            heal()
        count = len(ledger.acked)
        wait_for(lambda: len(ledger.acked) >= count + 300, 30, "enqueues flow again")
    return settle(log, ledger, 30)


def check(tally: Tally, *, lossless: bool) -> None:
    """Workers and producers came back by themselves within the bound; nothing acknowledged
    was lost (``lossless``), or at most 1% (asynchronous replication: measured, printed)."""
    assert tally.idle < RESUME_BOUND
    assert tally.stall < RESUME_BOUND
    if lossless:
        assert tally.lost == []
    else:
        assert len(tally.lost) <= max(10, tally.acked // 100), tally.lost[:10]


def test_sentinel_failover_under_load(
    redis_server: RedisServer, key_prefix: str, log: RunLog, tmp_path: Path
) -> None:
    with SentinelServers() as setup:
        old = setup.primary()
        pool = start_workers(setup.url, key_prefix, tmp_path, redis_server.url)
        try:
            tally = under_load(setup.url, key_prefix, log, setup.failover)
            assert setup.primary() != old
            assert all(proc.poll() is None for proc in pool.procs), "a worker died"
        finally:
            pool.kill_all()
    print(f"\nSENTINEL FAILOVER under load: {tally}")
    # Writes the old primary took after its replica was promoted are lost when it is demoted.
    check(tally, lossless=False)


@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_sentinel_primary_sigkilled_under_load(
    redis_server: RedisServer, key_prefix: str, log: RunLog, tmp_path: Path, wait_replicas: int
) -> None:
    # WAIT for one replica needs one left after the primary's death: two replicas then.
    with SentinelServers(replicas=1 + wait_replicas) as setup:
        pool = start_workers(setup.url, key_prefix, tmp_path, redis_server.url)
        try:
            tally = under_load(
                setup.url, key_prefix, log, setup.kill_primary, wait_replicas=wait_replicas
            )
            assert all(proc.poll() is None for proc in pool.procs), "a worker died"
        finally:
            pool.kill_all()
    print(f"\nSentinel primary SIGKILLed (wait_replicas={wait_replicas}): {tally}")
    check(tally, lossless=bool(wait_replicas))  # acknowledged only once a replica had it


def test_idle_workers_follow_a_failover_by_themselves(
    redis_server: RedisServer, key_prefix: str, log: RunLog, tmp_path: Path
) -> None:
    """Workers blocked in their idle wait on the old primary find the new one."""
    with SentinelServers() as setup:
        pool = start_workers(setup.url, key_prefix, tmp_path, redis_server.url)
        try:
            with Producer(setup.url, key_prefix, rate=50) as producer:
                wait_for(lambda: len(log.ended()) >= 5, 30, "the workers run jobs")
            wait_for(lambda: len(log.ended()) == len(producer.ledger.acked), 30, "all ran")
            setup.failover()  # the workers are idle, blocked on the old primary
            message = Job("record", "e2e", args={"n": -1}, id_="after").to_message()
            assert producer.broker.enqueue_sync([message]) == [True]
            took = wait_for(lambda: "after" in log.ended(), RESUME_BOUND, "the job ran")
            assert all(proc.poll() is None for proc in pool.procs)
        finally:
            pool.kill_all()
    print(f"\nidle workers after SENTINEL FAILOVER: the next job ran {took:.2f}s after enqueue")


def test_cluster_slot_migration_while_jobs_flow(
    redis_server: RedisServer, key_prefix: str, log: RunLog, tmp_path: Path
) -> None:
    with ClusterServers() as cluster:
        owner = cluster.node_for_key("{e2e}")[1]
        target = next(port for _host, port in cluster.primaries() if port != owner)
        pool = start_workers(cluster.url, key_prefix, tmp_path, redis_server.url)
        try:
            moved: list[int] = []
            tally = under_load(
                cluster.url,
                key_prefix,
                log,
                lambda: moved.append(cluster.migrate_key_slot("{e2e}", target, step=50)),
            )
            assert cluster.node_for_slot(slot_of("{e2e}"))[1] == target
            assert all(proc.poll() is None for proc in pool.procs), "a worker died"
        finally:
            pool.kill_all()
    print(f"\nslot migration of {moved[0]} keys under load: {tally}")
    assert moved[0] > 10  # the queue's keys really moved (not an empty slot)
    check(tally, lossless=True)  # scripts wait (TRYAGAIN) until the migration ends


@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_cluster_primary_sigkilled_under_load(
    redis_server: RedisServer, key_prefix: str, log: RunLog, tmp_path: Path, wait_replicas: int
) -> None:
    with ClusterServers(replicas=1) as cluster:
        owner = cluster.node_for_key("{e2e}")[1]
        pool = start_workers(cluster.url, key_prefix, tmp_path, redis_server.url)
        try:
            # With wait_replicas=1 the promoted replica has none until the killed node comes
            # back (as its replica): meanwhile enqueues fail with NotReplicatedError.
            tally = under_load(
                cluster.url,
                key_prefix,
                log,
                lambda: cluster.kill_primary(owner),
                wait_replicas=wait_replicas,
                heal=(lambda: cluster.restart(owner)) if wait_replicas else None,
            )
            assert cluster.node_for_slot(slot_of("{e2e}"))[1] != owner
            assert all(proc.poll() is None for proc in pool.procs), "a worker died"
        finally:
            pool.kill_all()
    print(f"\nCluster primary SIGKILLed (wait_replicas={wait_replicas}): {tally}")
    check(tally, lossless=bool(wait_replicas))
