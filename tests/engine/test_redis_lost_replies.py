"""Replies lost after Redis applied the command, finishes that take longer than a lease, and
event loops that hang: the Redis broker keeps each job leased to exactly one live holder.

Faults are injected at the broker's script call (the script runs, then the caller sees a lost
connection; or the call fails before it is sent) so each case is exact; the proxy matrix in
``tests/e2e/test_fault_matrix.py`` does the same on the wire.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from repid_django import Connection, Job, Repid, Router, Worker
from repid_django.engine.brokers.base import Outcome, OutcomeKind
from repid_django.engine.brokers.redis.broker import RedisMessageBroker

from ._helpers import Running, until
from .broker_helpers import msg

pytestmark = pytest.mark.redis
LEASE_TTL = 1.0
REAPER = 0.2

BrokerFactory = Callable[..., Coroutine[Any, Any, RedisMessageBroker]]


@pytest.fixture
async def make(redis_url: str, key_prefix: str) -> AsyncIterator[BrokerFactory]:
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


class Faults:
    """Wraps a broker's script calls: the next ``lose[name]`` calls of that script run, then
    their replies are lost; after that, while ``failing[name]`` is in the future, calls of it
    fail before being sent."""

    def __init__(self, broker: RedisMessageBroker) -> None:
        self.lose: dict[str, int] = {}
        self.failing: dict[str, float] = {}
        self.sent: dict[str, int] = {}
        real = broker._script

        async def script(name: str, keys: list[str], args: list[Any]) -> Any:
            lose = self.lose.get(name, 0) > 0
            if not lose and time.monotonic() < self.failing.get(name, 0.0):
                raise RedisConnectionError("injected: connection refused")
            self.sent[name] = self.sent.get(name, 0) + 1
            reply = await real(name, keys, args)
            if lose:
                self.lose[name] -= 1
                raise RedisConnectionError("injected: connection lost before the reply")
            return reply

        broker._script = script  # type: ignore[method-assign]


def leased(client: redis.Redis, prefix: str) -> int:
    return int(client.zcard(f"{prefix}:{{default}}:leases"))


async def test_a_claim_whose_reply_was_lost_gets_its_batch_when_sent_again(
    make: BrokerFactory, redis_client: redis.Redis, key_prefix: str
) -> None:
    broker = await make()
    faults = Faults(broker)
    await broker.enqueue([msg(f"j{i}") for i in range(10)])
    faults.lose["claim"] = 1
    got = await broker.claim(["default"], 4, 0)
    assert faults.sent["claim"] == 2  # the first send leased 4 jobs; its reply was lost
    assert [d.message.id for d in got] == ["j0", "j1", "j2", "j3"]
    # Nothing is leased to nobody: the 4 leases are the 4 deliveries the caller holds.
    assert leased(redis_client, key_prefix) == 4
    assert all(await broker.finish([Outcome(d, OutcomeKind.ACK) for d in got]))
    rest = await broker.claim(["default"], 10, 0)
    assert [d.message.id for d in rest] == [f"j{i}" for i in range(4, 10)]
    assert all(d.lost == 0 for d in rest)


async def test_two_lost_claim_replies_in_a_row_still_get_the_first_batch(
    make: BrokerFactory, redis_client: redis.Redis, key_prefix: str
) -> None:
    broker = await make()
    faults = Faults(broker)
    await broker.enqueue([msg(f"j{i}") for i in range(6)])
    faults.lose["claim"] = 2  # the repeat's reply is lost too (a flapping link)
    got = await broker.claim(["default"], 2, 0)
    assert faults.sent["claim"] == 3
    assert [d.message.id for d in got] == ["j0", "j1"]
    assert leased(redis_client, key_prefix) == 2


async def test_a_claim_that_gave_up_is_answered_by_the_next_claim(
    make: BrokerFactory, redis_client: redis.Redis, key_prefix: str
) -> None:
    broker = await make(max_backoff=0.05)
    faults = Faults(broker)
    await broker.enqueue([msg(f"j{i}") for i in range(6)])
    faults.lose["claim"] = 1
    faults.failing["claim"] = time.monotonic() + 0.5  # every resend fails: claim gives up
    with pytest.raises(ConnectionError):
        await broker.claim(["default"], 3, 0)
    assert leased(redis_client, key_prefix) == 3  # leased by the send whose reply was lost
    faults.failing.clear()  # Redis answers again
    got = await broker.claim(["default"], 3, 0)  # the worker's next try
    assert [d.message.id for d in got] == ["j0", "j1", "j2"]
    assert leased(redis_client, key_prefix) == 3
    assert all(await broker.finish([Outcome(d, OutcomeKind.ACK) for d in got]))
    # Three such blips in a row used to bury innocent jobs as worker_lost: none is lost now.
    for _ in range(3):
        faults.lose["claim"] = 1
        (d,) = await broker.claim(["default"], 1, 0)
        assert d.lost == 0
        assert await broker.finish([Outcome(d, OutcomeKind.ACK)]) == [True]
    assert await broker.list_dead("default") == []
    assert leased(redis_client, key_prefix) == 0


async def test_a_finish_retried_for_longer_than_the_lease_keeps_the_job(
    make: BrokerFactory,
) -> None:
    worker, other = await make(), await make()
    faults = Faults(worker)
    await worker.enqueue([msg("job")])
    (d,) = await worker.claim(["default"], 1, 0)
    faults.failing["finish"] = time.monotonic() + 3 * LEASE_TTL
    finishing = asyncio.create_task(worker.finish([Outcome(d, OutcomeKind.ACK)]))
    # While the outcome cannot be written, the lease is still extended: nobody else gets it.
    assert await other.claim(["default"], 1, 3 * LEASE_TTL) == []
    assert await finishing == [True]
    assert worker.keeper.held == 0


async def test_a_finish_whose_reply_was_lost_is_not_reported_lost_when_tried_again(
    make: BrokerFactory,
) -> None:
    broker = await make(finish_retry_time=0.2, max_backoff=0.05)
    faults = Faults(broker)
    await broker.enqueue([msg("job")])
    (d,) = await broker.claim(["default"], 1, 0)
    outcome = Outcome(d, OutcomeKind.ACK)
    faults.lose["finish"] = 1
    faults.failing["finish"] = time.monotonic() + 0.5  # the broker gives up; the caller retries
    with pytest.raises(ConnectionError):
        await broker.finish([outcome])
    faults.failing.clear()
    assert await broker.finish([outcome]) == [True]  # the first answer, not "lease lost"


async def test_a_hung_event_loop_lets_its_job_go_after_its_timeout_plus_grace(
    make: BrokerFactory, redis_client: redis.Redis, key_prefix: str
) -> None:
    hung, other = await make(hang_grace=0.5), await make()
    await hung.enqueue([msg("job", timeout=0.5)])
    (d,) = await hung.claim(["default"], 1, 0)
    ready = f"{key_prefix}:{{default}}:ready"
    back_after: list[float] = []

    def watch() -> None:  # another thread: this loop is about to block
        start = time.monotonic()
        while time.monotonic() - start < 10 and not redis_client.zcard(ready):
            time.sleep(0.02)
        back_after.append(time.monotonic() - start)

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(4.0)  # noqa: ASYNC251 - the actor blocks the loop for good (as far as we know)
    watcher.join()
    # timeout 0.5 + hang_grace 0.5 + lease 1.0 + reaper 0.2 (+ one extension period)
    assert back_after[0] <= 0.5 + 0.5 + LEASE_TTL + REAPER + LEASE_TTL / 3 + 0.3, back_after
    (again,) = await other.claim(["default"], 1, 0)
    assert again.lost == 1
    assert await hung.finish([Outcome(d, OutcomeKind.ACK)]) == [False]  # fenced: refused
    assert await other.finish([Outcome(again, OutcomeKind.ACK)]) == [True]


async def test_a_loop_blocked_for_less_than_timeout_plus_grace_keeps_its_job(
    make: BrokerFactory,
) -> None:
    worker, other = await make(hang_grace=1.0), await make()
    await worker.enqueue([msg("job", timeout=1.0)])
    (d,) = await worker.claim(["default"], 1, 0)
    time.sleep(2 * LEASE_TTL)  # noqa: ASYNC251 - longer than the lease, shorter than 1 + 1
    assert await other.claim(["default"], 1, 0) == []
    assert await worker.finish([Outcome(d, OutcomeKind.ACK)]) == [True]


@pytest.mark.slow
async def test_the_worker_keeps_outcomes_until_redis_takes_them(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    """A finish that Redis refuses for a while (here: NOREPLICAS, which the broker does not
    retry itself) is kept and tried again by the worker; the job does not run twice."""
    runs: list[str] = []
    router = Router()

    @router.actor(name="work")
    async def work(n: int) -> int:
        runs.append(f"run {n}")
        return n

    broker = RedisMessageBroker(
        redis_url, prefix=key_prefix, lease_ttl=LEASE_TTL, reaper_interval=REAPER
    )
    real = broker._script
    refuse_until = [0.0]

    async def script(name: str, keys: list[str], args: list[Any]) -> Any:
        if name == "finish" and time.monotonic() < refuse_until[0]:
            raise ResponseError("NOREPLICAS Not enough good replicas to write.")
        return await real(name, keys, args)

    broker._script = script  # type: ignore[method-assign]
    app = Repid(Connection(broker))
    async with app.magic(auto_disconnect=True):
        worker = Worker(routers=[router], handle_signals=[])
        running = Running(worker)
        await running.started()
        refuse_until[0] = time.monotonic() + 4 * LEASE_TTL
        job = Job("work", args={"n": 1}, store_result=True)
        job_id = await job.enqueue()
        await until(lambda: runs, what="the job ran")
        await until(
            lambda: redis_client.exists(f"{key_prefix}:{{default}}:result:{job_id}"),
            within=4 * LEASE_TTL + 8,
            what="the outcome was written once Redis took it",
        )
        runner = await running.stop()
    assert runs == ["run 1"]
    assert runner.counters.lease_lost == 0
    assert leased(redis_client, key_prefix) == 0


@pytest.mark.slow
async def test_a_job_on_a_hung_worker_runs_on_another_and_the_late_outcome_is_refused(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    """Two workers; the job lands on one whose actor blocks its event loop far past the job's
    timeout plus hang_grace. The other worker runs it within the bound; when the hung one wakes
    up, its outcome is refused (fenced) and the result is the other worker's."""
    router = Router()

    @router.actor(name="slow_start", timeout=0.5)
    async def slow_start() -> str:
        if threading.current_thread().name == "hung":
            time.sleep(6.0)  # noqa: ASYNC251 - the bug being simulated: a loop blocked for good
        return threading.current_thread().name

    def broker() -> RedisMessageBroker:
        return RedisMessageBroker(
            redis_url,
            prefix=key_prefix,
            lease_ttl=LEASE_TTL,
            reaper_interval=REAPER,
            hang_grace=0.5,
        )

    hung_runner: list[Any] = []
    hung_ready = threading.Event()
    hung_stop = threading.Event()

    async def run_hung() -> None:
        app = Repid(Connection(broker()))
        async with app.magic(auto_disconnect=True):
            worker = Worker(routers=[router], handle_signals=[], concurrency=1)
            running = Running(worker)
            await running.started()
            hung_ready.set()
            await asyncio.to_thread(hung_stop.wait)
            hung_runner.append(await running.stop())

    thread = threading.Thread(target=asyncio.run, args=(run_hung(),), name="hung")
    thread.start()
    try:
        assert await asyncio.to_thread(hung_ready.wait, 10)
        producer = Connection(broker())
        job = Job("slow_start", store_result=True, connection=producer)
        await job.enqueue()
        started = time.monotonic()
        leases = f"{key_prefix}:{{default}}:leases"
        await until(lambda: redis_client.zcard(leases) == 1, what="the hung worker took the job")
        app = Repid(Connection(broker()))
        async with app.magic(auto_disconnect=True):
            worker = Worker(routers=[router], handle_signals=[], concurrency=1)
            running = Running(worker)
            await running.started()
            await until(
                lambda: worker.runner is not None and worker.runner.processed == 1,
                within=8.0,
                what="the other worker ran the job",
            )
            took = time.monotonic() - started
            await running.stop()
        result = await job.result
        assert result is not None
        assert result.data == "MainThread"
        # timeout 0.5 + hang_grace 0.5 + lease 1.0 + reaper 0.2 + one extension period + claim
        assert took < 0.5 + 0.5 + LEASE_TTL + REAPER + LEASE_TTL / 3 + 1.0, took
    finally:
        hung_stop.set()
        await asyncio.to_thread(thread.join, 20)
        await producer.disconnect()
    (runner,) = hung_runner
    assert runner.counters.lease_lost == 1  # its late outcome was refused
    final = await job.result
    assert final is not None
    assert final.data == "MainThread"  # the refused late outcome changed nothing
