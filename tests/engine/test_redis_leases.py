"""Leases on the Redis broker: fencing, the reaper's recovery bound, the heartbeat thread and
the ``worker_lost`` limit."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from repid_django.engine.brokers.base import DeadReason, Delivery, Outcome, OutcomeKind
from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.brokers.redis.scripts import Script
from repid_django.engine.brokers.redis.wire import AsyncWire
from repid_django.engine.results import JobResult

from .broker_helpers import msg

pytestmark = pytest.mark.redis
LEASE_TTL = 1.0
REAPER = 0.2

BrokerFactory = Callable[..., Coroutine[Any, Any, RedisMessageBroker]]


@pytest.fixture
async def make(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[BrokerFactory]:
    made: list[RedisMessageBroker] = []

    async def factory(**options: Any) -> RedisMessageBroker:
        options = {"lease_ttl": LEASE_TTL, "reaper_interval": REAPER, **options}
        broker = RedisMessageBroker(redis_url, prefix=key_prefix, **options)
        await broker.connect()
        await broker.declare_queue("default")
        made.append(broker)
        return broker

    yield factory
    for broker in made:
        await broker.disconnect()


def result(job_id: str, data: object) -> JobResult:
    now = datetime.now(UTC)
    return JobResult(job_id, "act", True, data, None, now, now)


async def test_job_of_a_dead_worker_runs_again_within_lease_ttl_plus_reaper(
    make: BrokerFactory,
) -> None:
    dying, survivor = await make(), await make()
    await dying.enqueue([msg("job")])
    (held,) = await dying.claim(["default"], 1, 0)
    await dying.disconnect()  # the heartbeat stops with it, like a SIGKILLed process
    died_at = time.monotonic()
    got = await survivor.claim(["default"], 1, 10.0)
    recovery = time.monotonic() - died_at
    assert [d.message.id for d in got] == ["job"]
    assert got[0].lost == 1
    assert recovery <= LEASE_TTL + REAPER + 0.5
    assert got[0].token != held.token


async def test_idle_workers_reap_through_the_keeper_thread(
    make: BrokerFactory, redis_client: redis.Redis, key_prefix: str
) -> None:
    dying, idle = await make(), await make()
    await idle.claim(["default"], 1, 0)  # the idle one now watches the queue
    await dying.enqueue([msg("job")])
    await dying.claim(["default"], 1, 0)
    await dying.disconnect()
    ready = f"{key_prefix}:{{default}}:ready"
    deadline = time.monotonic() + LEASE_TTL + REAPER + 2.0
    while redis_client.zcard(ready) == 0:  # nobody claims: only the keeper thread can reap
        assert time.monotonic() < deadline, "the lease keeper did not reap the expired lease"
        time.sleep(0.02)  # noqa: ASYNC251 - nothing else should run meanwhile


async def test_stale_worker_is_fenced_and_one_result_is_stored(make: BrokerFactory) -> None:
    stale, fresh = await make(), await make()
    await stale.enqueue([msg("job")])
    (old,) = await stale.claim(["default"], 1, 0)
    stale.keeper.release([old])  # its heartbeat stalls, as in a frozen process
    (new,) = await fresh.claim(["default"], 1, 10.0)
    outcome = Outcome(old, OutcomeKind.ACK, result=result("job", "stale"))
    assert await stale.finish([outcome]) == [False]
    assert await fresh.get_result("job") is None
    assert await fresh.finish([Outcome(new, OutcomeKind.ACK, result=result("job", "fresh"))]) == [
        True
    ]
    stored = await fresh.get_result("job")
    assert stored is not None
    assert stored.data == "fresh"
    assert await stale.finish([Outcome(old, OutcomeKind.DEAD, error="late")]) == [False]
    assert await fresh.list_dead("default") == []


async def test_heartbeat_survives_a_blocked_event_loop(make: BrokerFactory) -> None:
    worker, other = await make(), await make()
    await worker.enqueue([msg("job")])
    (d,) = await worker.claim(["default"], 1, 0)
    # An actor that blocks the event loop for longer than the lease:
    time.sleep(LEASE_TTL * 2.5)  # noqa: ASYNC251
    assert await other.claim(["default"], 1, 0) == []
    assert (await other.queue_stats("default")).running == 1
    assert await worker.finish([Outcome(d, OutcomeKind.ACK)]) == [True]


async def test_worker_lost_after_max_lost_expired_leases(make: BrokerFactory) -> None:
    producer = await make(max_lost=2)
    await producer.enqueue([msg("killer"), msg("innocent")])
    deliveries = 0
    while True:
        crashing = await make(max_lost=2)
        got = await crashing.claim(["default"], 1, LEASE_TTL + REAPER + 1.5)
        if not got:
            break
        if got[0].message.id == "innocent":
            assert await crashing.finish([Outcome(got[0], OutcomeKind.ACK)]) == [True]
            continue
        deliveries += 1
        await crashing.disconnect()  # dies while running it
        assert deliveries <= 3
    assert deliveries == 3
    (dead,) = await producer.list_dead("default")
    assert (dead.id, dead.reason) == ("killer", DeadReason.WORKER_LOST)
    assert dead.error is not None
    assert "3 times" in dead.error
    stats = await producer.queue_stats("default")
    assert (stats.ready, stats.running, stats.delayed) == (0, 0, 0)


async def test_finish_repeated_after_a_lost_reply_reports_what_it_applied(
    make: BrokerFactory,
    redis_client: redis.Redis,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = await make()
    await broker.enqueue([msg("a"), msg("b")])
    held = await broker.claim(["default"], 2, 0)
    stale = await make()
    original = AsyncWire.run
    calls: list[str] = []

    async def reply_lost(wire: AsyncWire, script: Script, keys: list[str], args: list[Any]) -> Any:
        reply = await original(wire, script, keys, args)
        calls.append(script.name)
        if script.name == "finish" and calls.count("finish") == 1:
            # The script ran, then the connection dropped before its reply came back.
            raise RedisConnectionError("Connection closed by server.")
        return reply

    monkeypatch.setattr(AsyncWire, "run", reply_lost)
    outcomes = [
        Outcome(held[0], OutcomeKind.ACK, result=result("a", 1)),
        Outcome(held[1], OutcomeKind.ACK, result=result("b", 2)),
    ]
    assert await broker.finish(outcomes) == [True, True]  # not "lease lost"
    assert calls.count("finish") == 2  # it was sent twice
    monkeypatch.setattr(AsyncWire, "run", original)
    base = f"{key_prefix}:{{default}}:"
    assert redis_client.hlen(base + "msgs") == 0
    assert redis_client.exists(base + "result:a", base + "result:b") == 2
    # The memo answers only the same call: another token for the same job is still fenced off.
    forged = Delivery(held[0].message, token="forged")
    assert await stale.finish([Outcome(forged, OutcomeKind.ACK)]) == [False]
    # It expires by itself.
    memo = list(redis_client.scan_iter(match=base + "fin:*"))
    assert len(memo) == 2  # one per finish call
    assert all(0 < redis_client.pttl(k) <= broker.finish_memo_ttl * 1000 for k in memo)


async def test_a_lost_lease_is_still_reported_when_the_call_is_repeated(
    make: BrokerFactory,
) -> None:
    broker = await make()
    await broker.enqueue([msg("a")])
    (held,) = await broker.claim(["default"], 1, 0)
    await broker.disconnect()  # the lease expires and another worker takes the job
    other = await make()
    (again,) = await other.claim(["default"], 1, 5.0)
    assert again.message.id == "a"
    stale = await make()
    outcome = [Outcome(held, OutcomeKind.ACK)]
    assert await stale.finish(outcome) == [False]
    assert await stale.finish(outcome) == [False]
    assert await other.finish([Outcome(again, OutcomeKind.ACK)]) == [True]


async def test_a_last_chance_job_is_only_leased_alone_to_an_idle_claimer(
    make: BrokerFactory,
) -> None:
    producer = await make(max_lost=1)
    await producer.enqueue([msg("poison"), msg("x1"), msg("x2")])
    dying = await make(max_lost=1)
    assert len(await dying.claim(["default"], 10, 0)) == 3  # one batch: all die together
    await dying.disconnect()
    busy = await make(max_lost=1)
    await busy.enqueue([msg("fresh", priority=5)])
    (fresh,) = await busy.claim(["default"], 1, 0)  # holds a lease from now on
    # All three now have max_lost lost leases: a claimer that holds something gets none of them,
    # once the reaper has returned them (it waits for its held job instead).
    assert await busy.claim(["default"], 10, LEASE_TTL + REAPER + 1.0) == []
    idle = await make(max_lost=1)
    (alone,) = await idle.claim(["default"], 10, 0)  # limit 10, but alone
    assert (alone.message.id, alone.lost) == ("poison", 1)
    assert await idle.claim(["default"], 10, 0.3) == []  # nothing more while it runs
    # The busy claimer takes the next one alone once its own job is finished.
    assert await busy.finish([Outcome(fresh, OutcomeKind.ACK)]) == [True]
    (x1,) = await busy.claim(["default"], 10, 1.0)
    assert (x1.message.id, x1.lost) == ("x1", 1)
    await idle.disconnect()  # the poison kills its worker once more, alone: dead
    assert await busy.finish([Outcome(x1, OutcomeKind.ACK)]) == [True]
    (x2,) = await busy.claim(["default"], 10, 1.0)
    assert await busy.finish([Outcome(x2, OutcomeKind.ACK)]) == [True]
    await wait_until_dead(producer, 1)
    (dead,) = await producer.list_dead("default")
    assert (dead.id, dead.reason) == ("poison", DeadReason.WORKER_LOST)
    stats = await producer.queue_stats("default")
    assert (stats.ready, stats.running, stats.delayed) == (0, 0, 0)


async def test_max_lost_zero_keeps_batches(make: BrokerFactory) -> None:
    broker = await make(max_lost=0)
    await broker.enqueue([msg("a"), msg("b")])
    assert len(await broker.claim(["default"], 10, 0)) == 2


async def wait_until_dead(broker: RedisMessageBroker, count: int) -> None:
    deadline = time.monotonic() + LEASE_TTL + REAPER + 5.0
    while (await broker.queue_stats("default")).dead < count:
        assert time.monotonic() < deadline, "not dead-lettered in time"
        await broker.claim(["default"], 1, REAPER)  # claims reap; nothing else is ready
