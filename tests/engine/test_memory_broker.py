"""The in-memory broker on its own: ordering, leases, outcomes, dead letters, results, join."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from repid_django import DeadReason, InMemoryMessageBroker, JobResult, PrioritiesT
from repid_django.engine.brokers import Delivery, Outcome, OutcomeKind
from repid_django.engine.message import Message, new_id


def msg(actor: str = "a", queue: str = "q", **fields: object) -> Message:
    return Message(id=fields.pop("id", None) or new_id(), actor=actor, queue=queue, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def b() -> InMemoryMessageBroker:
    broker = InMemoryMessageBroker()
    await broker.declare_queue("q")
    return broker


async def test_undeclared_queue_is_a_key_error_and_nothing_is_written(
    b: InMemoryMessageBroker,
) -> None:
    with pytest.raises(KeyError) as info:
        await b.enqueue([msg(queue="q"), msg(queue="default")])
    assert str(info.value) == "'default'"
    assert (await b.queue_stats("q")).ready == 0


async def test_declaring_twice_is_harmless(b: InMemoryMessageBroker) -> None:
    await b.enqueue([msg()])
    await b.declare_queue("q")
    assert (await b.queue_stats("q")).ready == 1
    assert await b.list_queues() == ["q"]


async def test_strict_priority_then_fifo(b: InMemoryMessageBroker) -> None:
    order = [
        ("l1", PrioritiesT.LOW),
        ("m1", PrioritiesT.MEDIUM),
        ("h1", PrioritiesT.HIGH),
        ("l2", PrioritiesT.LOW),
        ("h2", PrioritiesT.HIGH),
        ("m2", PrioritiesT.MEDIUM),
        ("x", 100),
    ]
    await b.enqueue([msg(id=name, priority=int(p)) for name, p in order])
    listed = [m.id for m in await b.list_messages("q")]
    claimed = [d.message.id for d in await b.claim(["q"], 3, 0)]
    claimed += [d.message.id for d in await b.claim(["q"], 10, 0)]
    assert claimed == ["x", "h1", "h2", "m1", "m2", "l1", "l2"]
    assert listed == claimed


async def test_priority_across_queues(b: InMemoryMessageBroker) -> None:
    await b.declare_queue("other")
    await b.enqueue([msg(id="q-low", priority=-50), msg(id="o-high", queue="other", priority=50)])
    await b.enqueue([msg(id="q-high", priority=50)])
    claimed = [d.message.id for d in await b.claim(["q", "other"], 10, 0)]
    assert claimed == ["o-high", "q-high", "q-low"]


async def test_claim_waits_for_new_work_and_wakes_at_once(b: InMemoryMessageBroker) -> None:
    claim = asyncio.create_task(b.claim(["q"], 5, wait=10))
    await asyncio.sleep(0)
    assert not claim.done()
    started = time.monotonic()
    await b.enqueue([msg(id="late")])
    [delivery] = await asyncio.wait_for(claim, 1)
    assert delivery.message.id == "late"
    assert time.monotonic() - started < 0.5


async def test_claim_returns_empty_after_wait(b: InMemoryMessageBroker) -> None:
    started = time.monotonic()
    assert await b.claim(["q"], 5, wait=0.05) == []
    assert 0.04 <= time.monotonic() - started < 1


async def test_delayed_messages_are_promoted_by_claim(b: InMemoryMessageBroker) -> None:
    run_at = time.time() + 0.1
    await b.enqueue([msg(id="later", run_at=run_at), msg(id="now")])
    assert [d.message.id for d in await b.claim(["q"], 10, 0)] == ["now"]
    stats = await b.queue_stats("q")
    assert (stats.ready, stats.delayed, stats.running) == (0, 1, 1)
    [delivery] = await b.claim(["q"], 10, wait=5)  # wakes at run_at, without a new enqueue
    assert delivery.message.id == "later"
    assert time.time() >= run_at


async def test_unique_ids_are_not_duplicated_while_waiting_or_running(
    b: InMemoryMessageBroker,
) -> None:
    assert await b.enqueue([msg(id="u", unique=True)]) == [True]
    assert await b.enqueue([msg(id="u", unique=True)]) == [False]
    [delivery] = await b.claim(["q"], 1, 0)
    assert await b.enqueue([msg(id="u", unique=True)]) == [False]
    await b.finish([Outcome(delivery, OutcomeKind.ACK)])
    assert await b.enqueue([msg(id="u", unique=True)]) == [True]


async def test_oversized_body_is_refused_and_nothing_written() -> None:
    broker = InMemoryMessageBroker(max_message_size=300)
    await broker.declare_queue("q")
    with pytest.raises(ValueError, match="max_message_size"):
        await broker.enqueue([msg(), msg(args={"blob": "x" * 1000})])
    assert (await broker.queue_stats("q")).ready == 0


async def test_undecodable_body_is_dead_lettered_and_claim_goes_on(
    b: InMemoryMessageBroker,
) -> None:
    b.enqueue_raw("q", b"{not json", priority=10)
    b.enqueue_raw("q", '{"v": 99}', priority=10)
    await b.enqueue([msg(id="good")])
    assert [d.message.id for d in await b.claim(["q"], 10, 0)] == ["good"]
    dead = await b.list_dead("q")
    assert [d.reason for d in dead] == [DeadReason.DECODE_ERROR] * 2
    assert dead[0].message is None
    assert dead[0].raw == '{"v": 99}'
    assert "wire version" in (dead[0].error or "")


async def test_expired_ttl_is_dead_lettered_at_claim(b: InMemoryMessageBroker) -> None:
    await b.enqueue([msg(id="old", ttl=1.0, enqueued_at=time.time() - 5), msg(id="fresh", ttl=60)])
    assert [d.message.id for d in await b.claim(["q"], 10, 0)] == ["fresh"]
    [letter] = await b.list_dead("q")
    assert (letter.id, letter.reason) == ("old", DeadReason.EXPIRED)


async def test_finish_is_fenced_by_the_lease_token(b: InMemoryMessageBroker) -> None:
    await b.enqueue([msg(id="m")])
    [first] = await b.claim(["q"], 1, 0)
    assert await b.finish([Outcome(first, OutcomeKind.REJECT)]) == [True]
    [second] = await b.claim(["q"], 1, 0)
    assert second.token != first.token
    stale = Outcome(first, OutcomeKind.DEAD, reason=DeadReason.FAILED, error="late")
    result = JobResult("m", "a", True, 1, None, datetime.now(UTC), datetime.now(UTC))
    assert await b.finish([Outcome(first, OutcomeKind.ACK, result=result), stale]) == [False] * 2
    assert await b.list_dead("q") == []
    assert await b.get_result("m") is None
    assert (await b.queue_stats("q")).running == 1
    assert await b.finish([Outcome(second, OutcomeKind.ACK)]) == [True]
    assert await b.finish([Outcome(second, OutcomeKind.ACK)]) == [False]


async def test_forged_delivery_is_refused(b: InMemoryMessageBroker) -> None:
    await b.enqueue([msg(id="m")])
    [delivery] = await b.claim(["q"], 1, 0)
    forged = Delivery(msg(id="other"), delivery.token)
    assert await b.finish([Outcome(forged, OutcomeKind.ACK)]) == [False]


async def test_retry_requeues_with_attempt_and_run_at(b: InMemoryMessageBroker) -> None:
    await b.enqueue([msg(id="m", retries=3)])
    [delivery] = await b.claim(["q"], 1, 0)
    run_at = time.time() + 60
    await b.finish([Outcome(delivery, OutcomeKind.RETRY, run_at=run_at)])
    [delayed] = await b.list_messages("q", delayed=True)
    assert (delayed.id, delayed.attempt, delayed.run_at) == ("m", 1, run_at)
    assert b.counters().retried == 1


async def test_reject_keeps_attempt_and_place(b: InMemoryMessageBroker) -> None:
    await b.enqueue([msg(id="first", attempt=1, retries=2), msg(id="second")])
    [delivery] = await b.claim(["q"], 1, 0)
    await b.finish([Outcome(delivery, OutcomeKind.REJECT)])
    claimed = await b.claim(["q"], 2, 0)
    assert [d.message.id for d in claimed] == ["first", "second"]
    assert claimed[0].message.attempt == 1


async def test_reject_counting_unknown_later(b: InMemoryMessageBroker) -> None:
    await b.enqueue([msg(id="m")])
    [delivery] = await b.claim(["q"], 1, 0)
    run_at = time.time() + 30
    await b.finish([Outcome(delivery, OutcomeKind.REJECT, run_at=run_at, count_unknown=True)])
    [delayed] = await b.list_messages("q", delayed=True)
    assert (delayed.unknown_count, delayed.attempt, delayed.run_at) == (1, 0, run_at)


async def test_ack_of_recurring_message_reschedules_same_id(b: InMemoryMessageBroker) -> None:
    await b.enqueue([msg(id="r", deferred_by=30.0)])
    [delivery] = await b.claim(["q"], 1, 0)
    run_at = time.time() + 30
    await b.finish([Outcome(delivery, OutcomeKind.ACK, run_at=run_at)])
    [again] = await b.list_messages("q", delayed=True)
    assert (again.id, again.run_at, again.attempt) == ("r", run_at, 0)


async def test_dead_letters_newest_first_bounded_requeue_and_purge() -> None:
    b = InMemoryMessageBroker(dead_letter_limit=3)
    await b.declare_queue("q")
    await b.enqueue([msg(id=f"m{i}", retries=1, attempt=1) for i in range(5)])
    deliveries = await b.claim(["q"], 5, 0)
    outcomes = [
        Outcome(d, OutcomeKind.DEAD, reason=DeadReason.FAILED, error=f"boom {d.message.id}")
        for d in deliveries
    ]
    await b.finish(outcomes)
    dead = await b.list_dead("q")
    assert [d.id for d in dead] == ["m4", "m3", "m2"]
    assert dead[0].error == "boom m4"
    assert [d.id for d in await b.list_dead("q", offset=1, limit=1)] == ["m3"]
    assert await b.requeue_dead("q", ["m3"]) == 1
    [fresh] = await b.list_messages("q")
    assert (fresh.id, fresh.attempt) == ("m3", 0)
    assert await b.purge_dead("q", ["m4"]) == 1
    assert [d.id for d in await b.list_dead("q")] == ["m2"]
    assert await b.purge_dead("q") == 1
    assert (await b.queue_stats("q")).dead == 0


async def test_results_are_stored_with_the_outcome_and_expire(b: InMemoryMessageBroker) -> None:
    await b.enqueue([msg(id="m", result_ttl=0.05)])
    [delivery] = await b.claim(["q"], 1, 0)
    started = datetime.now(UTC)
    result = JobResult("m", "a", True, {"n": 1}, None, started, datetime.now(UTC))
    await b.finish([Outcome(delivery, OutcomeKind.ACK, result=result)])
    assert await b.get_result("m") == result
    await asyncio.sleep(0.06)  # the TTL itself is what is tested here
    assert await b.get_result("m") is None


async def test_cancel_flush_and_delete(b: InMemoryMessageBroker) -> None:
    await b.enqueue([msg(id="a"), msg(id="b"), msg(id="c", run_at=time.time() + 60)])
    assert await b.cancel("q", "a") is True
    assert await b.cancel("q", "a") is False
    assert [m.id for m in await b.list_messages("q")] == ["b"]
    assert await b.flush_queue("q") == 2
    stats = await b.queue_stats("q")
    assert (stats.ready, stats.delayed) == (0, 0)
    await b.delete_queue("q")
    assert await b.list_queues() == []


async def test_join_waits_for_running_and_due_messages(b: InMemoryMessageBroker) -> None:
    await b.enqueue([msg(id="m"), msg(id="later", run_at=time.time() + 3600)])
    with pytest.raises(TimeoutError, match="1 ready"):
        await b.join("q", timeout=0.01)

    async def consume() -> None:
        [delivery] = await b.claim(["q"], 1, 0)
        await asyncio.sleep(0.01)
        await b.finish([Outcome(delivery, OutcomeKind.ACK)])

    task = asyncio.create_task(consume())
    await b.join("q", timeout=5)  # the far-away delayed message does not count
    assert task.done()


async def test_counters(b: InMemoryMessageBroker) -> None:
    await b.enqueue([msg(), msg()])
    deliveries = await b.claim(["q"], 2, 0)
    await b.finish(
        [
            Outcome(deliveries[0], OutcomeKind.ACK),
            Outcome(deliveries[1], OutcomeKind.DEAD, reason=DeadReason.FAILED),
        ]
    )
    counters = b.counters()
    assert (counters.enqueued, counters.acked, counters.dead) == (2, 1, 1)
    assert counters.extra["claimed"] == 2


async def test_lost_leases_count_and_end_as_worker_lost() -> None:
    b = InMemoryMessageBroker(max_lost=1)
    await b.declare_queue("q")
    await b.enqueue([msg(id="p")])
    (first,) = await b.claim(["q"], 1, 0)
    assert first.lost == 0
    assert b.expire_leases() == 1
    (second,) = await b.claim(["q"], 1, 0)
    assert second.lost == 1
    assert b.expire_leases() == 1
    assert await b.claim(["q"], 1, 0) == []
    (dead,) = await b.list_dead("q")
    assert (dead.id, dead.reason) == ("p", DeadReason.WORKER_LOST)
    assert await b.finish([Outcome(second, OutcomeKind.ACK)]) == [False]


async def test_a_last_chance_message_is_only_leased_alone_to_an_idle_claimer() -> None:
    b = InMemoryMessageBroker(max_lost=1)
    await b.declare_queue("q")
    await b.enqueue([msg(id="p"), msg(id="x1"), msg(id="x2")])
    assert len(await b.claim(["q"], 10, 0)) == 3
    b.expire_leases()  # the worker died holding all three
    await b.enqueue([msg(id="fresh", priority=PrioritiesT.HIGH)])
    (fresh,) = await b.claim(["q"], 10, 0)  # the head is a normal message: batch ends before p
    assert fresh.message.id == "fresh"
    assert await b.claim(["q"], 10, 0.05) == []  # p waits for a claimer holding nothing
    claim = asyncio.ensure_future(b.claim(["q"], 10, 5.0))
    await asyncio.sleep(0)
    assert not claim.done()
    assert await b.finish([Outcome(fresh, OutcomeKind.ACK)]) == [True]
    (alone,) = await claim  # the waiting claim takes it at once, alone
    assert (alone.message.id, alone.lost) == ("p", 1)
    assert await b.claim(["q"], 10, 0.05) == []  # nothing else while it runs
    assert await b.finish([Outcome(alone, OutcomeKind.ACK)]) == [True]
    (x1,) = await b.claim(["q"], 10, 0)
    assert x1.message.id == "x1"
