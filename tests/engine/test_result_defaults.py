"""Results only when useful (issue 15, item 8), on a real redis-server and on both brokers.

By default (``store_result`` auto) a job whose run returns ``None`` leaves nothing in Redis, and
``job.result`` still answers at once that it succeeded; values, failures and recurring runs are
stored, for an hour unless configured. The wire format stays readable both ways.
"""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime

import pytest
import redis

from repid_django import (
    Connection,
    InMemoryMessageBroker,
    Job,
    RedisMessageBroker,
    Repid,
    Router,
    Worker,
)
from repid_django.conf import DEFAULTS
from repid_django.engine.brokers.base import DeadReason, MessageBroker, Outcome, OutcomeKind
from repid_django.engine.job import DEFAULT_RESULT_TTL
from repid_django.engine.message import Message, MessageDecodeError, decode, encode
from repid_django.engine.results import JobResult
from repid_django.engine.serializer import dumps, loads

from ._helpers import Running, until
from .broker_helpers import msg

HOUR_MS = 3_600_000


def result_keys(client: redis.Redis, prefix: str) -> list[bytes]:
    return list(client.scan_iter(match=f"{prefix}:*result*", count=1000))


def router() -> Router:
    r = Router()

    @r.actor
    async def noop() -> None:
        return None

    @r.actor
    async def double(n: int) -> int:
        return 2 * n

    @r.actor
    async def boom() -> None:
        raise KeyError("missing")

    return r


async def run_burst(connection: Connection) -> int:
    worker = Worker(routers=[router()], handle_signals=[], burst=True, connection=connection)
    return (await worker.run()).processed


def test_the_defaults_agree_on_an_hour() -> None:
    broker_default = inspect.signature(RedisMessageBroker).parameters["result_ttl"].default
    assert DEFAULT_RESULT_TTL.total_seconds() == broker_default == DEFAULTS["RESULT_TTL"] == 3600
    job = Job("noop")
    assert (job.store_result, job.result_ttl) == (None, None)  # auto, the broker's RESULT_TTL


async def test_a_none_of_a_default_job_stores_nothing_and_reads_as_a_success(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    connection = Connection(redis_broker)
    async with Repid(connection).magic():
        job = Job("noop", connection=connection)
        await job.enqueue()
        assert await job.result is None  # waiting: not over yet
        assert await run_burst(connection) == 1
        assert result_keys(redis_client, key_prefix) == []
        assert await redis_broker.get_result(job.last_id or "") is None
        before = datetime.now(UTC)
        done = await job.result  # at once, no waiting for a result that never comes
        assert done is not None
        assert (done.success, done.data, done.exception) == (True, None, None)
        assert (done.stored, done.actor, done.job_id) == (False, "noop", job.last_id)
        assert done.finished_when >= before
        from_sync = await asyncio.to_thread(lambda: job.result.value)  # the sync client's path
        assert from_sync is not None
        assert (from_sync.success, from_sync.stored) == (True, False)


async def test_store_result_true_stores_even_a_none(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    connection = Connection(redis_broker)
    async with Repid(connection).magic():
        job = Job("noop", store_result=True, connection=connection)
        await job.enqueue()
        assert await run_burst(connection) == 1
        key = f"{key_prefix}:{{default}}:result:{job.last_id}"
        assert result_keys(redis_client, key_prefix) == [key.encode()]
        assert 0 < redis_client.pttl(key) <= HOUR_MS
        stored = await job.result
        assert stored is not None
        assert (stored.success, stored.data, stored.stored) == (True, None, True)


async def test_a_value_is_stored_for_the_new_default_of_an_hour(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    connection = Connection(redis_broker)
    async with Repid(connection).magic():
        job = Job("double", args={"n": 21}, connection=connection)
        await job.enqueue()
        assert await run_burst(connection) == 1
        key = f"{key_prefix}:{{default}}:result:{job.last_id}"
        assert HOUR_MS - 60_000 < redis_client.pttl(key) <= HOUR_MS  # not a day any more
        stored = await job.result
        assert stored is not None
        assert (stored.data, stored.stored, stored.actor) == (42, True, "double")


async def test_a_broker_result_ttl_applies_to_default_jobs(
    redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    broker = RedisMessageBroker(redis_url, prefix=key_prefix, result_ttl=120)
    connection = Connection(broker)
    async with Repid(connection).magic(auto_disconnect=True):
        short, own = Job("double", args={"n": 1}), Job("double", args={"n": 2}, result_ttl=600)
        await short.enqueue()
        await own.enqueue()
        assert await run_burst(connection) == 2
    base = f"{key_prefix}:{{default}}:result:"
    assert 60_000 < redis_client.pttl(base + (short.last_id or "")) <= 120_000
    assert 120_000 < redis_client.pttl(base + (own.last_id or "")) <= 600_000


async def test_a_failure_is_still_stored_by_default(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    connection = Connection(redis_broker)
    async with Repid(connection).magic():
        job = Job("boom", connection=connection)
        await job.enqueue()
        assert await run_burst(connection) == 1
        assert len(result_keys(redis_client, key_prefix)) == 1
        failed = await job.result
        assert failed is not None
        assert (failed.success, failed.stored) == (False, True)
        assert "KeyError: 'missing'" in (failed.exception or "")
        assert [d.id for d in await redis_broker.list_dead("default")] == [job.last_id]


async def test_a_dead_job_without_a_result_reads_its_dead_letter(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    connection = Connection(redis_broker)
    async with Repid(connection).magic():
        job = Job("boom", store_result=False, connection=connection)
        await job.enqueue()
        assert await run_burst(connection) == 1
        assert result_keys(redis_client, key_prefix) == []
        failed = await job.result
        assert failed is not None
        assert (failed.success, failed.stored, failed.actor) == (False, False, "boom")
        assert (failed.exception or "").startswith("dead-lettered (failed): ")
        assert "KeyError: 'missing'" in (failed.exception or "")


async def test_a_recurring_job_keeps_its_last_none(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    """Its message never goes away, so only a stored result tells that it ran."""
    connection = Connection(redis_broker)
    async with Repid(connection).magic():
        job = Job("noop", deferred_by=0.05, connection=connection)
        await job.enqueue()
        running = Running(Worker(routers=[router()], handle_signals=[], connection=connection))
        await until(lambda: result_keys(redis_client, key_prefix), what="a run was stored")
        await running.stop()
        assert await redis_broker.cancel("default", job.last_id or "")
        stored = await job.result
        assert stored is not None
        assert (stored.success, stored.data, stored.stored) == (True, None, True)


async def test_results_stored_apart_are_always_stored() -> None:
    """With a separate results broker the worker writes results after the message is gone, so
    auto jobs are sent as store_result=True: their result is there to read."""
    messages, results = InMemoryMessageBroker(), InMemoryMessageBroker()
    connection = Connection(messages, results_broker=results)
    await messages.declare_queue("default")
    job = Job("noop", connection=connection)
    await job.enqueue()
    [waiting] = await messages.list_messages("default")
    assert waiting.store_result is True
    assert await run_burst(connection) == 1
    stored = await job.result
    assert stored is not None
    assert (stored.success, stored.stored) == (True, True)


# the wire format -------------------------------------------------------------------------------


def test_auto_on_the_wire_reads_as_true_for_an_older_worker() -> None:
    auto = msg("a", enqueued_at=1.0)
    assert auto.store_result is None
    data = loads(encode(auto))
    assert (data["store_result"], data["store_none"]) == (True, False)
    assert decode(encode(auto)) == auto
    for store in (True, False):
        explicit = msg("e", store_result=store, enqueued_at=1.0)
        assert "store_none" not in loads(encode(explicit))  # the same bytes as before
        assert decode(encode(explicit)) == explicit


@pytest.mark.parametrize(("sent", "read"), [(True, True), (False, False)])
def test_a_body_from_before_decodes_as_before(sent: bool, read: bool) -> None:
    body = {
        "v": 1,
        "id": "old",
        "actor": "a",
        "queue": "default",
        "priority": 0,
        "args": None,
        "retries": 0,
        "attempt": 0,
        "timeout": 600.0,
        "ttl": None,
        "run_at": None,
        "deferred_by": None,
        "store_result": sent,
        "result_ttl": 86400.0,
        "unique": False,
        "unknown_count": 0,
        "enqueued_at": 1.0,
    }
    assert decode(dumps(body)).store_result is read
    assert decode(dumps({**body, "store_none": False})).store_result is (None if sent else False)
    with pytest.raises(MessageDecodeError, match="store_none"):
        decode(dumps({**body, "store_none": "no"}))
    with pytest.raises(MessageDecodeError, match="store_result"):
        decode(dumps({**body, "store_result": None}))


# job_result on both brokers --------------------------------------------------------------------


@pytest.fixture
async def b(contract_broker: MessageBroker) -> MessageBroker:
    await contract_broker.declare_queue("default")
    return contract_broker


def result_of(job_id: str, data: object) -> JobResult:
    now = datetime.now(UTC)
    return JobResult(job_id, "act", True, data, None, now, now)


async def test_job_result_tells_waiting_from_ended(b: MessageBroker) -> None:
    assert isinstance(b, RedisMessageBroker | InMemoryMessageBroker)
    await b.enqueue([msg("none"), msg("value"), msg("dead"), msg("later", run_at=4e9)])
    assert await b.job_result("none") is None  # waiting
    assert await b.job_result("later") is None  # delayed
    claimed = {d.message.id: d for d in await b.claim(["default"], 3, 0)}
    assert await b.job_result("none") is None  # running
    await b.finish(
        [
            Outcome(claimed["none"], OutcomeKind.ACK),
            Outcome(claimed["value"], OutcomeKind.ACK, result=result_of("value", 7)),
            Outcome(claimed["dead"], OutcomeKind.DEAD, reason=DeadReason.TIMEOUT, error="slow"),
        ]
    )
    ended = await b.job_result("none")
    assert ended is not None
    assert (ended.success, ended.data, ended.stored, ended.actor) == (True, None, False, "")
    value = await b.job_result("value")
    assert value is not None
    assert (value.data, value.stored) == (7, True)
    dead = await b.job_result("dead")
    assert dead is not None
    assert (dead.success, dead.stored, dead.timed_out) == (False, False, True)
    assert dead.exception == "dead-lettered (timeout): slow"
    never = await b.job_result("never-enqueued")  # reads the same as an ended job (documented)
    assert never is not None
    assert (never.success, never.stored) == (True, False)
    assert await b.get_result("none") is None  # nothing stored: get_result is unchanged
    await b.requeue_dead("default")
    assert await b.job_result("dead") is None  # back in its queue: not over


def test_a_message_field_default_is_auto() -> None:
    assert Message(id="m", actor="a", queue="q").store_result is None
