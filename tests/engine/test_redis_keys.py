"""Key hygiene: every key has the prefix and a hash tag, what is kept expires, nothing is left."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
import redis

from repid_django.engine.brokers.base import DeadReason, Outcome, OutcomeKind
from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.results import JobResult

from .broker_helpers import msg

pytestmark = pytest.mark.redis


def keys_of(client: redis.Redis, prefix: str) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(match=f"{prefix}:*", count=1000))


async def test_full_run_leaves_only_expiring_keys(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    b = redis_broker
    for queue in ("default", "q:two"):
        await b.declare_queue(queue)
    await b.enqueue([msg(f"a{i}") for i in range(20)] + [msg(f"b{i}", "q:two") for i in range(5)])
    await b.enqueue([msg("later", run_at=time.time() + 0.2), msg("u", unique=True)])
    done = 0
    while done < 27:
        got = await b.claim(["default", "q:two"], 10, 2.0)
        now = datetime.now(UTC)
        outcomes = []
        for d in got:
            res = JobResult(d.message.id, "act", True, 1, None, now, now)
            if d.message.id == "a3" and d.message.attempt == 0:
                outcomes.append(Outcome(d, OutcomeKind.RETRY, run_at=time.time()))
                continue
            kind = OutcomeKind.DEAD if d.message.id == "b1" else OutcomeKind.ACK
            outcomes.append(Outcome(d, kind, result=res, reason=DeadReason.FAILED))
            done += 1
        assert all(await b.finish(outcomes))
    pattern = re.compile(rf"^{key_prefix}:\{{[^}}]+\}}:")
    keys = keys_of(redis_client, key_prefix)
    assert keys
    assert all(pattern.match(k) for k in keys), keys
    for key in keys:
        if (
            ":result:" in key
            or ":fin:" in key
            or ":clm:" in key
            or key.endswith((":dead", ":dmsg", ":dinfo"))
        ):
            assert redis_client.pttl(key) > 0, key
        else:
            assert key == f"{key_prefix}:{{~}}:queues", key
    assert len([k for k in keys if ":result:" in k]) == 27
    assert redis_client.pttl(f"{key_prefix}:{{q:two}}:result:b0") <= 86_400_000
    await b.purge_dead("q:two")
    leftover = [
        k
        for k in keys_of(redis_client, key_prefix)
        if not any(memo in k for memo in (":result:", ":fin:", ":clm:"))
    ]
    assert leftover == [f"{key_prefix}:{{~}}:queues"]


async def test_dead_letters_are_bounded_and_expire(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    b = RedisMessageBroker(redis_url, prefix=key_prefix, dead_letter_max=3, dead_letter_ttl=60)
    await b.connect()
    try:
        await b.enqueue([msg(f"d{i}") for i in range(5)])
        got = await b.claim(["default"], 5, 0)
        assert all(await b.finish([Outcome(d, OutcomeKind.DEAD, error="x") for d in got]))
        assert [d.id for d in await b.list_dead("default")] == ["d4", "d3", "d2"]
        assert 0 < redis_client.pttl(f"{key_prefix}:{{default}}:dead") <= 60_000
        assert redis_client.hlen(f"{key_prefix}:{{default}}:dmsg") == 3
    finally:
        await b.disconnect()


async def test_result_ttl_comes_from_the_message(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    await redis_broker.enqueue([msg("r", result_ttl=30.0)])
    (d,) = await redis_broker.claim(["default"], 1, 0)
    now = datetime.now(UTC)
    res = JobResult("r", "act", True, None, None, now, now)
    assert await redis_broker.finish([Outcome(d, OutcomeKind.ACK, result=res)]) == [True]
    assert 0 < redis_client.pttl(f"{key_prefix}:{{default}}:result:r") <= 30_000


async def test_results_stored_apart_are_found(redis_broker: RedisMessageBroker) -> None:
    now = datetime.now(UTC)
    res = JobResult("apart", "act", True, [1, 2], None, now, now)
    await redis_broker.store_results([(res, 10.0)])
    found = await redis_broker.get_result("apart", "any-queue")
    assert found is not None
    assert found.data == [1, 2]
