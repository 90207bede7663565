"""The Redis broker's lean scripts: priorities without a `pri` entry per message, batched
writes, the tokens hash encoding, duplicates inside one call, and what older versions left."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
import redis

from repid_django.engine.brokers.base import DeadReason, Outcome, OutcomeKind
from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.results import JobResult

from .broker_helpers import msg

pytestmark = pytest.mark.redis


def base(prefix: str, queue: str = "default") -> str:
    return f"{prefix}:{{{queue}}}:"


async def claim_ids(b: RedisMessageBroker, limit: int, wait: float = 0) -> list[str]:
    got = await b.claim(["default"], limit, wait)
    assert all(await b.finish([Outcome(d, OutcomeKind.ACK) for d in got]))
    return [d.message.id for d in got]


async def test_a_retry_with_a_delay_keeps_its_priority(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    b = redis_broker
    await b.enqueue([msg("high", priority=50, retries=1), msg("low1", priority=-50)])
    (high,) = await b.claim(["default"], 1, 0)
    run_at = time.time() + 0.2
    assert await b.finish([Outcome(high, OutcomeKind.RETRY, run_at=run_at)]) == [True]
    assert redis_client.hget(base(key_prefix) + "pri", "high") == b"50"
    await b.enqueue([msg("mid")])
    await asyncio.sleep(max(run_at - time.time(), 0) + 0.01)
    # Promoted by this claim: the retry of "high" goes before everything else.
    assert await claim_ids(b, 10) == ["high", "mid", "low1"]
    assert not redis_client.exists(base(key_prefix) + "pri")


async def test_delayed_and_recurring_messages_keep_their_priority(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    b = redis_broker
    soon = time.time() + 0.2
    await b.enqueue([msg("later", priority=80, run_at=soon), msg("every", priority=60)])
    await b.enqueue([msg(f"n{i}") for i in range(3)])
    got = await b.claim(["default"], 1, 0)
    assert [d.message.id for d in got] == ["every"]
    recurring = got[0].message.with_changes(deferred_by=0.2)
    every = got[0].__class__(message=recurring, token=got[0].token)
    assert await b.finish([Outcome(every, OutcomeKind.ACK)]) == [True]  # next one in 0.2 s
    assert redis_client.hget(base(key_prefix) + "pri", "every") == b"60"
    await asyncio.sleep(max(soon + 0.2 - time.time(), 0) + 0.01)
    got = await b.claim(["default"], 10, 0)
    assert [d.message.id for d in got] == ["later", "every", "n0", "n1", "n2"]
    dead = Outcome(got[1], OutcomeKind.DEAD, reason=DeadReason.FAILED, error="no")
    assert await b.finish([dead, *(Outcome(d, OutcomeKind.ACK) for d in got[2:])]) == [True] * 4
    assert await b.finish([Outcome(got[0], OutcomeKind.ACK)]) == [True]
    assert (await b.queue_stats("default")).dead == 1


async def test_running_jobs_are_kept_in_a_hash_table_and_a_skiplist(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    b = redis_broker
    tokens, leases = base(key_prefix) + "tokens", base(key_prefix) + "leases"
    await b.enqueue([msg("a"), msg("b"), msg("c")])
    (a,) = await b.claim(["default"], 1, 0)
    assert redis_client.object("encoding", tokens) == b"hashtable"
    assert redis_client.object("encoding", leases) == b"skiplist"
    assert redis_client.hkeys(tokens) == [b"a"]  # the filler went at once
    assert (await b.queue_stats("default")).running == 1
    (bee,) = await b.claim(["default"], 1, 0)
    assert await b.finish([Outcome(a, OutcomeKind.ACK)]) == [True]
    assert redis_client.object("encoding", tokens) == b"hashtable"
    assert await b.finish([Outcome(bee, OutcomeKind.ACK)]) == [True]
    assert not redis_client.exists(tokens, leases)
    assert await claim_ids(b, 1) == ["c"]


async def test_big_batches_are_written_in_chunks(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    b = redis_broker
    count = 5000  # over the per-call argument chunk of the variadic writes
    written = await b.enqueue([msg(f"m{i}", priority=i % 3) for i in range(count)])
    assert all(written)
    got = await b.claim(["default"], count, 0)
    assert len(got) == count
    order = [d.message.id for d in got]
    assert order[:3] == ["m2", "m5", "m8"]  # priority 2 first, FIFO within it
    assert b.keeper.extend() == 0
    assert all(await b.finish([Outcome(d, OutcomeKind.ACK) for d in got]))
    assert redis_client.hlen(base(key_prefix) + "msgs") == 0


async def test_an_id_twice_in_one_call(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    b = redis_broker
    first, second = msg("same", args=[1]), msg("same", args=[2])
    assert await b.enqueue([first, msg("other"), second]) == [True, True, False]
    (same, other) = await b.claim(["default"], 2, 0)
    assert same.message.args == [1]
    outcomes = [Outcome(same, OutcomeKind.ACK), Outcome(other, OutcomeKind.ACK)]
    assert await b.finish([*outcomes, Outcome(same, OutcomeKind.RETRY)]) == [True, True, False]
    assert redis_client.hlen(base(key_prefix) + "msgs") == 0


async def test_what_an_older_version_left_is_served_and_cleaned(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    b = redis_broker
    q = base(key_prefix)
    # Older versions kept a `pri` entry for every message, and a delayed message without one
    # reads its priority from its body.
    await b.enqueue([msg("old", priority=10), msg("plain"), msg("late", priority=90, run_at=1.0)])
    redis_client.hset(q + "pri", "old", 10)
    redis_client.hdel(q + "pri", "late")
    assert await claim_ids(b, 10) == ["late", "old", "plain"]
    assert not redis_client.exists(q + "pri")


async def test_results_are_kept_for_their_own_time_or_the_default(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    b = redis_broker
    await b.enqueue([msg("own", result_ttl=5.0), msg("default"), msg("day", result_ttl=86_400.0)])
    got = await b.claim(["default"], 3, 0)
    now = datetime.now(UTC)
    outcomes = [
        Outcome(d, OutcomeKind.ACK, result=JobResult(d.message.id, "act", True, 1, None, now, now))
        for d in got
    ]
    assert await b.finish(outcomes) == [True, True, True]
    q = base(key_prefix)
    assert 0 < redis_client.pttl(q + "result:own") <= 5_000
    assert 5_000 < redis_client.pttl(q + "result:default") <= b.result_ttl * 1000
    assert 5_000 < redis_client.pttl(q + "result:day") <= 86_400_000
    assert (await b.get_result("own")) is not None


async def test_a_big_first_batch_starts_the_ready_zset_as_a_skiplist(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    b = redis_broker
    ready = base(key_prefix) + "ready"
    await b.enqueue([msg(f"s{i}") for i in range(10)])
    assert redis_client.object("encoding", ready) in (b"listpack", b"ziplist")  # compact
    await b.enqueue([msg(f"x{i}", "big") for i in range(300)])
    assert redis_client.object("encoding", base(key_prefix, "big") + "ready") == b"skiplist"
    assert redis_client.zcard(base(key_prefix, "big") + "ready") == 300
    got = await b.claim(["big"], 300, 0)
    assert [d.message.id for d in got] == [f"x{i}" for i in range(300)]
    assert all(await b.finish([Outcome(d, OutcomeKind.ACK) for d in got]))


async def test_acks_leave_the_priorities_of_delayed_messages(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    b = redis_broker
    await b.enqueue([msg("later", priority=7, run_at=time.time() + 60), msg("now")])
    assert await claim_ids(b, 10) == ["now"]
    q = base(key_prefix)
    assert redis_client.hgetall(q + "pri") == {b"later": b"7"}
    assert await b.cancel("default", "later")
    assert not redis_client.exists(q + "pri", q + "msgs", q + "delayed")
