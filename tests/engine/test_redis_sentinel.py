"""The Redis broker behind password-protected Sentinels (data nodes and Sentinels each with a
password of their own), on real servers: jobs go through, the deploy check and the health
command reach it, and a wrong password or service name is a clear error naming the fix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from repid_django.checks import probe_redis
from repid_django.engine.brokers.base import Outcome, OutcomeKind
from repid_django.engine.brokers.redis import NotReplicatedError
from repid_django.engine.brokers.redis.broker import RedisMessageBroker

from ..topologies import SentinelServers
from .broker_helpers import msg

pytestmark = pytest.mark.redis
DATA, WATCH = "data-s3cret", "watch-s3cret"


@pytest.fixture(scope="module")
def setup() -> Iterator[SentinelServers]:
    with SentinelServers(password=DATA, sentinel_password=WATCH) as servers:
        yield servers


def url(setup: SentinelServers, *, data: str = DATA, watch: str = WATCH, name: str = "") -> str:
    hosts = ",".join(f"{host}:{port}" for host, port in setup.sentinels)
    service = name or setup.url.rsplit("/", 2)[-2]
    return f"redis+sentinel://:{data}@{hosts}/{service}/0?sentinel_password={watch}"


async def test_jobs_go_through_authenticated_sentinels(
    setup: SentinelServers, key_prefix: str
) -> None:
    broker = RedisMessageBroker(url(setup), prefix=key_prefix)
    await broker.connect()
    try:
        assert await broker.enqueue([msg("a"), msg("b")]) == [True, True]
        assert broker.enqueue_sync([msg("c")]) == [True]
        got = await broker.claim(["default"], 10, 0)
        assert sorted(d.message.id for d in got) == ["a", "b", "c"]
        assert await broker.finish([Outcome(d, OutcomeKind.ACK) for d in got]) == [True] * 3
        assert (await broker.queue_stats("default")).ready == 0
    finally:
        await broker.disconnect()


def test_deploy_check_reaches_the_primary(setup: SentinelServers) -> None:
    assert [m.id for m in probe_redis(url(setup))] == ["repid_django.W004"]  # persistence off


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"watch": "wrong"}, "refused the credentials .* the Sentinels refused their password"),
        ({"name": "nosuchservice"}, "knows no service 'nosuchservice'"),
        ({"data": "wrong"}, "refused the credentials"),
    ],
)
async def test_wrong_credentials_or_service_are_clear_errors(
    setup: SentinelServers, key_prefix: str, change: dict[str, str], match: str
) -> None:
    broker = RedisMessageBroker(url(setup, **change), prefix=key_prefix, enqueue_timeout=1.0)
    with pytest.raises(ConnectionError, match=match) as raised:
        broker.enqueue_sync([msg("x")])
    assert DATA not in str(raised.value)
    assert WATCH not in str(raised.value)
    await broker.disconnect()


async def test_wait_replicas_confirms_an_enqueue_on_the_replica(
    setup: SentinelServers, key_prefix: str
) -> None:
    broker = RedisMessageBroker(url(setup), prefix=key_prefix, wait_replicas=1)
    try:
        assert await broker.enqueue([msg("a"), msg("b", "other")]) == [True, True]
        assert broker.enqueue_sync([msg("c")]) == [True]
        (replica,) = setup.replicas()
        assert setup.ask(replica[1], "HEXISTS", f"{key_prefix}:{{default}}:msgs", "c") == 1
    finally:
        await broker.disconnect()


async def test_wait_replicas_without_a_replica_says_the_job_is_not_safe_yet(
    redis_url: str, key_prefix: str
) -> None:
    """A server with no replica: the enqueue is written but not confirmed, and says so; the
    same id enqueued again writes nothing while the job waits."""
    broker = RedisMessageBroker(redis_url, prefix=key_prefix, wait_replicas=1, replica_timeout=0.2)
    try:
        with pytest.raises(NotReplicatedError, match="only 0 of the 1 replica"):
            await broker.enqueue([msg("a")])
        with pytest.raises(NotReplicatedError, match="only 0 of the 1 replica"):
            broker.enqueue_sync([msg("b")])
        assert (await broker.queue_stats("default")).ready == 2
        with pytest.raises(NotReplicatedError):  # a retry after the error writes nothing new
            broker.enqueue_sync([msg("b")])
        assert (await broker.queue_stats("default")).ready == 2
    finally:
        await broker.disconnect()
