"""The broker contract (``brokers/base.py``), checked on the in-memory and the Redis broker."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from repid_django.engine.brokers.base import (
    DeadReason,
    MessageBroker,
    Outcome,
    OutcomeKind,
)
from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.results import JobResult

from .broker_helpers import msg, put_raw


@pytest.fixture
async def b(contract_broker: MessageBroker) -> MessageBroker:
    await contract_broker.declare_queue("default")
    await contract_broker.declare_queue("other")
    return contract_broker


def result_of(job_id: str, data: object) -> JobResult:
    now = datetime.now(UTC)
    return JobResult(job_id, "act", True, data, None, now, now)


async def test_strict_priority_then_fifo(b: MessageBroker) -> None:
    await b.enqueue([msg("low1", priority=-50), msg("mid1"), msg("high1", priority=50)])
    await b.enqueue([msg("mid2"), msg("high2", priority=50), msg("low2", priority=-50)])
    got = await b.claim(["default"], 10, 0)
    assert [d.message.id for d in got] == ["high1", "high2", "mid1", "mid2", "low1", "low2"]


async def test_priority_across_queues(b: MessageBroker) -> None:
    await b.enqueue([msg("a", "default", priority=0), msg("b", "other", priority=50)])
    got = await b.claim(["default", "other"], 1, 0)
    if isinstance(b, RedisMessageBroker) and b.is_cluster:
        # Queues in different slots are claimed in turn (docs/production.md): both come,
        # one per claim, and nothing is claimed twice.
        got += await b.claim(["default", "other"], 1, 0)
        assert sorted(d.message.id for d in got) == ["a", "b"]
        return
    assert [d.message.id for d in got] == ["b"]


async def test_claim_limit_and_stats(b: MessageBroker) -> None:
    await b.enqueue([msg(f"m{i}") for i in range(5)] + [msg("later", run_at=time.time() + 60)])
    stats = await b.queue_stats("default")
    assert (stats.ready, stats.delayed, stats.running) == (5, 1, 0)
    got = await b.claim(["default"], 2, 0)
    assert len(got) == 2
    stats = await b.queue_stats("default")
    assert (stats.ready, stats.delayed, stats.running) == (3, 1, 2)


async def test_unique_id_while_queued_or_running(b: MessageBroker) -> None:
    assert await b.enqueue([msg("u", unique=True)]) == [True]
    assert await b.enqueue([msg("u", unique=True)]) == [False]
    (delivery,) = await b.claim(["default"], 5, 0)
    assert await b.enqueue([msg("u", unique=True)]) == [False]
    assert await b.finish([Outcome(delivery, OutcomeKind.ACK)]) == [True]
    assert await b.enqueue([msg("u", unique=True)]) == [True]


async def test_too_large_batch_writes_nothing(b: MessageBroker) -> None:
    big = msg("big", args=["x" * (b.max_message_size + 10)])
    with pytest.raises(ValueError, match="max_message_size"):
        await b.enqueue([msg("small"), big])
    assert (await b.queue_stats("default")).ready == 0


async def test_delayed_is_promoted_by_the_claim(b: MessageBroker) -> None:
    run_at = time.time() + 0.3
    await b.enqueue([msg("later", run_at=run_at)])
    assert await b.claim(["default"], 1, 0) == []
    started = time.monotonic()
    got = await b.claim(["default"], 1, 5.0)
    assert [d.message.id for d in got] == ["later"]
    assert time.time() >= run_at - 0.01
    assert time.monotonic() - started < 2.0  # woke for the delayed job, not at the wait's end


async def test_idle_claim_waits_then_returns_empty(b: MessageBroker) -> None:
    started = time.monotonic()
    assert await b.claim(["default"], 1, 0.3) == []
    assert time.monotonic() - started >= 0.25


async def test_waiting_claim_wakes_on_enqueue(b: MessageBroker) -> None:
    async def produce() -> None:
        await asyncio.sleep(0.2)
        await b.enqueue([msg("wake")])

    task = asyncio.create_task(produce())
    started = time.monotonic()
    got = await b.claim(["default"], 1, 10.0)
    await task
    assert [d.message.id for d in got] == ["wake"]
    assert time.monotonic() - started < 3.0


async def test_ack_stores_the_result(b: MessageBroker) -> None:
    await b.enqueue([msg("r1")])
    (d,) = await b.claim(["default"], 1, 0)
    assert await b.finish([Outcome(d, OutcomeKind.ACK, result=result_of("r1", {"n": 1}))]) == [True]
    stored = await b.get_result("r1")  # type: ignore[attr-defined]
    assert stored is not None
    assert stored.data == {"n": 1}
    assert stored.success
    assert (await b.queue_stats("default")).running == 0


async def test_stale_token_is_fenced(b: MessageBroker) -> None:
    await b.enqueue([msg("f")])
    (d,) = await b.claim(["default"], 1, 0)
    forged = type(d)(message=d.message, token="not-the-token")
    assert await b.finish([Outcome(forged, OutcomeKind.ACK, result=result_of("f", 1))]) == [False]
    assert await b.get_result("f") is None  # type: ignore[attr-defined]
    assert await b.finish([Outcome(d, OutcomeKind.ACK)]) == [True]
    assert await b.finish([Outcome(d, OutcomeKind.ACK)]) == [False]


async def test_retry_goes_to_delayed_with_next_attempt(b: MessageBroker) -> None:
    await b.enqueue([msg("r", retries=2)])
    (d,) = await b.claim(["default"], 1, 0)
    run_at = time.time() + 0.2
    assert await b.finish([Outcome(d, OutcomeKind.RETRY, run_at=run_at)]) == [True]
    assert (await b.queue_stats("default")).delayed == 1
    (again,) = await b.claim(["default"], 1, 5.0)
    assert again.message.attempt == 1
    assert time.time() >= run_at - 0.01


async def test_reject_returns_to_the_front_without_spending_a_retry(b: MessageBroker) -> None:
    await b.enqueue([msg("first"), msg("second")])
    (d,) = await b.claim(["default"], 1, 0)
    assert await b.finish([Outcome(d, OutcomeKind.REJECT)]) == [True]
    got = await b.claim(["default"], 2, 0)
    assert [x.message.id for x in got] == ["first", "second"]
    assert got[0].message.attempt == 0


async def test_unknown_actor_reject_counts(b: MessageBroker) -> None:
    await b.enqueue([msg("u")])
    (d,) = await b.claim(["default"], 1, 0)
    later = time.time() + 0.1
    assert await b.finish([Outcome(d, OutcomeKind.REJECT, run_at=later, count_unknown=True)])
    (again,) = await b.claim(["default"], 1, 5.0)
    assert again.message.unknown_count == 1


async def test_dead_letters_list_requeue_purge(b: MessageBroker) -> None:
    await b.enqueue([msg("d1", retries=1), msg("d2")])
    d1, d2 = await b.claim(["default"], 2, 0)
    outcomes = [
        Outcome(d1, OutcomeKind.DEAD, reason=DeadReason.FAILED, error="boom"),
        Outcome(d2, OutcomeKind.DEAD, reason=DeadReason.TIMEOUT, error="slow"),
    ]
    assert await b.finish(outcomes) == [True, True]
    dead = await b.list_dead("default")
    assert [x.id for x in dead] == ["d2", "d1"]  # newest first
    assert (dead[0].reason, dead[0].error) == (DeadReason.TIMEOUT, "slow")
    assert dead[1].message is not None
    assert dead[1].message.actor == "act"
    assert (await b.queue_stats("default")).dead == 2
    assert await b.requeue_dead("default", ["d1"]) == 1
    (back,) = await b.claim(["default"], 5, 0)
    assert (back.message.id, back.message.attempt) == ("d1", 0)
    assert await b.purge_dead("default") == 1
    assert await b.list_dead("default") == []


async def test_undecodable_bodies_are_dead_lettered(b: MessageBroker) -> None:
    await put_raw(b, "default", b"\x80\x81 not json")
    await put_raw(b, "default", b'{"v": 1, "id": "x"')
    await b.enqueue([msg("good")])
    got = await b.claim(["default"], 10, 0)
    assert [d.message.id for d in got] == ["good"]
    dead = await b.list_dead("default")
    assert len(dead) == 2
    assert {x.reason for x in dead} == {DeadReason.DECODE_ERROR}
    assert all(x.message is None and x.raw for x in dead)


async def test_expired_ttl_is_dead_lettered(b: MessageBroker) -> None:
    await b.enqueue([msg("old", ttl=1.0, enqueued_at=time.time() - 10), msg("fresh", ttl=60.0)])
    got = await b.claim(["default"], 10, 0)
    assert [d.message.id for d in got] == ["fresh"]
    (dead,) = await b.list_dead("default")
    assert (dead.id, dead.reason) == ("old", DeadReason.EXPIRED)


async def test_ttl_counts_from_when_a_deferred_run_becomes_due(b: MessageBroker) -> None:
    # Enqueued long ago but due only now (deferred, or a recurring job's later occurrence):
    # its ttl starts when it becomes due, so it still runs.
    now = time.time()
    await b.enqueue([msg("later", ttl=5.0, enqueued_at=now - 3600, run_at=now - 1)])
    got = await b.claim(["default"], 10, 0)
    assert [d.message.id for d in got] == ["later"]
    assert await b.list_dead("default") == []


async def test_recurring_ack_schedules_the_next_run(b: MessageBroker) -> None:
    await b.enqueue([msg("cron", deferred_by=60.0, run_at=time.time() - 1)])
    (d,) = await b.claim(["default"], 1, 0)
    assert await b.finish([Outcome(d, OutcomeKind.ACK)]) == [True]
    (nxt,) = await b.list_messages("default", delayed=True)
    assert nxt.id == "cron"
    assert nxt.run_at is not None
    assert nxt.run_at > time.time() + 50


async def test_cancel_flush_list_and_delete(b: MessageBroker) -> None:
    await b.enqueue([msg("a"), msg("b"), msg("c", run_at=time.time() + 60)])
    assert [m.id for m in await b.list_messages("default")] == ["a", "b"]
    assert await b.cancel("default", "a")
    assert not await b.cancel("default", "a")
    assert await b.flush_queue("default") == 2
    assert await b.queue_stats("default") == type(await b.queue_stats("default"))("default")
    assert "default" in await b.list_queues()
    await b.delete_queue("other")
    assert "other" not in await b.list_queues()


async def test_wake_claimers_ends_a_waiting_claim(b: MessageBroker) -> None:
    wake = b.wake_claimers  # type: ignore[attr-defined]  # both brokers have it
    task = asyncio.create_task(b.claim(["default"], 1, 30.0))
    started = time.monotonic()
    while not task.done():
        assert time.monotonic() - started < 3.0, "the claim kept waiting after wake_claimers()"
        wake()
        await asyncio.sleep(0.02)
    assert task.result() == []
