"""Jobs from the producer side: arguments, uniqueness, scheduling, results and sync callers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from repid_django import (
    Connection,
    InMemoryMessageBroker,
    Job,
    JobResult,
    Queue,
    Worker,
    enqueue_many,
)

from ._helpers import Running, until


def quiet(**kwargs: object) -> Worker:
    kwargs.setdefault("handle_signals", [])
    return Worker(**kwargs)  # type: ignore[arg-type]


@pytest.mark.usefixtures("conn", "queue")
async def test_non_json_args_are_refused_naming_the_argument(
    broker: InMemoryMessageBroker,
) -> None:
    with pytest.raises(TypeError, match=r"job 'report': args\['when'\] is a datetime"):
        await Job("report", args={"when": datetime.now(UTC)}).enqueue()
    with pytest.raises(TypeError, match=r"args\[1\]\['price'\]"):
        await Job("report", args=[1, {"price": Decimal("1.5")}]).enqueue()
    with pytest.raises(TypeError, match=r"args\['n'\].*nan"):
        await Job("report", args={"n": float("nan")}).enqueue()
    assert (await broker.queue_stats("default")).ready == 0
    assert broker.counters().enqueued == 0


@pytest.mark.usefixtures("conn", "queue")
async def test_unique_id_is_not_duplicated(broker: InMemoryMessageBroker, start: object) -> None:
    job = Job("once", id_="report-2024")
    assert job.is_unique
    assert not Job("many").is_unique
    assert await job.enqueue() == "report-2024"
    await job.enqueue()
    assert (await broker.queue_stats("default")).ready == 1
    plain = Job("many")
    first, second = await plain.enqueue(), await plain.enqueue()
    assert first != second
    assert (await broker.queue_stats("default")).ready == 3


@pytest.mark.usefixtures("conn", "queue")
async def test_results_success_and_failure_with_times() -> None:
    worker = quiet(burst=True)

    @worker.actor
    async def double(n: int) -> dict[str, int]:
        await asyncio.sleep(0.01)
        return {"n": n * 2}

    @worker.actor
    async def boom() -> None:
        raise KeyError("missing")

    ok, bad = Job("double", args={"n": 4}), Job("boom")
    before = datetime.now(UTC)
    await ok.enqueue()
    await bad.enqueue()
    assert await ok.result is None  # not run yet
    await worker.run()
    after = datetime.now(UTC)
    good = await ok.result
    assert isinstance(good, JobResult)
    assert (good.success, good.data, good.exception) == (True, {"n": 8}, None)
    assert before <= good.started_when <= good.finished_when <= after
    assert good.duration >= 0.009
    assert good.job_id == ok.last_id
    assert good.actor == "double"
    failed = await bad.result
    assert failed is not None
    assert (failed.success, failed.data) == (False, None)
    assert "KeyError: 'missing'" in (failed.exception or "")


@pytest.mark.usefixtures("conn", "queue")
async def test_non_json_return_value_is_a_clear_failure(broker: InMemoryMessageBroker) -> None:
    worker = quiet(burst=True)

    @worker.actor
    async def leaky() -> object:
        return {1, 2}

    job = Job("leaky")
    await job.enqueue()
    await worker.run()
    result = await job.result
    assert result is not None
    assert not result.success
    assert "return value of actor 'leaky' is a set" in (result.exception or "")


@pytest.mark.usefixtures("conn", "queue")
async def test_store_result_false_stores_nothing(broker: InMemoryMessageBroker) -> None:
    worker = quiet(burst=True)

    @worker.actor
    async def quietly() -> int:
        return 1

    job = Job("quietly", store_result=False)
    await job.enqueue()
    assert (await worker.run()).succeeded == 1
    assert await broker.get_result(job.last_id or "") is None
    ended = await job.result  # the job is over: rebuilt, its value unknown
    assert ended is not None
    assert (ended.success, ended.data, ended.stored, ended.actor) == (True, None, False, "quietly")


@pytest.mark.usefixtures("conn", "queue")
async def test_deferred_until_and_ttl(broker: InMemoryMessageBroker) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    await Job("later", deferred_until=later).enqueue()
    [delayed] = await broker.list_messages("default", delayed=True)
    assert delayed.run_at == later.timestamp()
    worker = quiet(burst=True)
    ran: list[int] = []

    @worker.actor
    async def stale() -> None:
        ran.append(1)

    job = Job("stale", ttl=timedelta(seconds=0.01))
    await job.enqueue()
    await asyncio.sleep(0.02)  # let the TTL pass: that is what is tested
    await worker.run()
    assert ran == []
    [letter] = await broker.list_dead("default")
    assert letter.reason == "expired"


@pytest.mark.usefixtures("conn", "queue")
async def test_enqueue_many_is_one_broker_call(broker: InMemoryMessageBroker) -> None:
    calls: list[int] = []
    original = broker.enqueue

    async def counting(messages):  # type: ignore[no-untyped-def]
        calls.append(len(messages))
        return await original(messages)

    broker.enqueue = counting  # type: ignore[method-assign]
    ids = await enqueue_many([Job("a"), Job("b", priority=50), Job("c")])
    assert calls == [3]
    assert len(set(ids)) == 3
    assert [m.actor for m in await broker.list_messages("default")] == ["b", "a", "c"]


@pytest.mark.usefixtures("conn", "queue")
async def test_join_makes_worker_tests_deterministic(
    broker: InMemoryMessageBroker, start: object
) -> None:
    worker = quiet()
    seen: list[int] = []

    @worker.actor
    async def work(i: int) -> None:
        seen.append(i)

    running = Running(worker)
    for i in range(20):
        await Job("work", args={"i": i}).enqueue()
    await broker.join("default", timeout=5)
    assert sorted(seen) == list(range(20))
    assert (await running.stop()).processed == 20


@pytest.fixture
def loop_thread() -> Iterator[tuple[asyncio.AbstractEventLoop, Connection, InMemoryMessageBroker]]:
    """A connection bound to an event loop running in another thread."""
    broker = InMemoryMessageBroker()
    connection = Connection(broker)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(connection.connect())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield loop, connection, broker
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_calls_from_sync_code_run_on_the_connections_loop(
    loop_thread: tuple[asyncio.AbstractEventLoop, Connection, InMemoryMessageBroker],
) -> None:
    loop, connection, broker = loop_thread
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # plain sync code: no loop in this thread
    declared = Queue("sync-q", connection=connection).declare()
    assert declared.value is None
    job = Job("double", queue="sync-q", args={"n": 5}, connection=connection)
    job_id = job.enqueue().value
    assert job_id == job.last_id
    stats = connection.call(lambda: broker.queue_stats("sync-q"))
    assert stats.ready == 1

    worker = Worker(connection=connection)  # default signals: not installable in this thread

    @worker.actor(queue="sync-q")
    async def double(n: int) -> int:
        return n * 2

    future = asyncio.run_coroutine_threadsafe(worker.run(), loop)
    deadline = time.monotonic() + 5
    result = job.result.value
    while result is None and time.monotonic() < deadline:
        time.sleep(0.005)
        result = job.result.value
    assert result is not None
    assert result.data == 10
    loop.call_soon_threadsafe(worker.stop)
    assert future.result(5).processed == 1


@pytest.mark.usefixtures("conn")
async def test_unawaited_call_warns_and_sends_nothing(broker: InMemoryMessageBroker) -> None:
    await broker.declare_queue("default")
    call = Job("x").enqueue()
    with pytest.warns(RuntimeWarning, match="never awaited"):
        del call
    assert (await broker.queue_stats("default")).ready == 0


def test_job_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Job("")
    with pytest.raises(ValueError, match="retries"):
        Job("x", retries=-1)
    with pytest.raises(ValueError, match="priority"):
        Job("x", priority=1000)
    with pytest.raises(TypeError, match="args"):
        Job("x", args="text")
    assert isinstance(Job("x", queue="q").queue, Queue)


async def test_until_helper_fails_clearly() -> None:
    with pytest.raises(pytest.fail.Exception, match="never"):
        await until(lambda: False, within=0.01, what="never")
