"""The worker: ordering, concurrency, threads and processes, shutdown, limits, unknown actors."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence

import pytest

from repid_django import (
    Connection,
    DeadReason,
    EventKind,
    InMemoryMessageBroker,
    Job,
    JobEvent,
    PrioritiesT,
    Router,
    Worker,
    WorkerInfo,
    enqueue_many,
)

from ._helpers import Running, until

Start = Callable[[Worker], Running]


def pid_actor() -> int:
    return os.getpid()


def failing_in_process(word: str) -> None:
    raise ValueError(f"child says {word}")


def sleeping_in_process(seconds: float) -> None:
    time.sleep(seconds)


def quiet(**kwargs: object) -> Worker:
    """A worker that leaves the test process's signals alone."""
    kwargs.setdefault("handle_signals", [])
    return Worker(**kwargs)  # type: ignore[arg-type]


@pytest.mark.usefixtures("conn", "queue")
async def test_priority_order_then_fifo() -> None:
    seen: list[str] = []
    worker = quiet(concurrency=1, burst=True)

    @worker.actor
    async def record(tag: str) -> None:
        seen.append(tag)

    plan = [("l1", PrioritiesT.LOW), ("m1", PrioritiesT.MEDIUM), ("h1", PrioritiesT.HIGH)]
    plan += [("l2", PrioritiesT.LOW), ("h2", PrioritiesT.HIGH), ("m2", PrioritiesT.MEDIUM)]
    for tag, priority in plan:
        await Job("record", priority=priority, args={"tag": tag}).enqueue()
    runner = await worker.run()
    assert seen == ["h1", "h2", "m1", "m2", "l1", "l2"]
    assert runner.processed == 6


@pytest.mark.usefixtures("conn", "queue")
async def test_args_dict_list_and_none() -> None:
    calls: list[tuple[object, ...]] = []
    worker = quiet(burst=True)

    @worker.actor
    async def add(a: int = 0, b: int = 0) -> int:
        calls.append((a, b))
        return a + b

    await Job("add", args={"a": 1, "b": 2}).enqueue()
    await Job("add", args=[3, 4]).enqueue()
    await Job("add").enqueue()
    await worker.run()
    assert sorted(calls) == [(0, 0), (1, 2), (3, 4)]


@pytest.mark.usefixtures("conn", "queue")
async def test_concurrency_limit_is_honoured() -> None:
    limit = 3
    inflight = 0
    peak = 0
    gate = asyncio.Event()
    worker = quiet(concurrency=limit, burst=True)

    @worker.actor
    async def job() -> None:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        if inflight == limit:
            gate.set()
        async with asyncio.timeout(5):
            await gate.wait()
        await asyncio.sleep(0)
        inflight -= 1

    for _ in range(10):
        await Job("job").enqueue()
    runner = await worker.run()
    assert peak == limit
    assert runner.processed == 10


@pytest.mark.usefixtures("conn", "queue")
async def test_claims_and_outcomes_are_batched(broker: InMemoryMessageBroker) -> None:
    calls = {"claim": 0, "finish": 0}
    claim, finish = broker.claim, broker.finish

    async def counted_claim(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["claim"] += 1
        return await claim(*args, **kwargs)

    async def counted_finish(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["finish"] += 1
        return await finish(*args, **kwargs)

    broker.claim = counted_claim  # type: ignore[method-assign]
    broker.finish = counted_finish  # type: ignore[method-assign]
    worker = quiet(burst=True, concurrency=100)

    @worker.actor
    async def noop(i: int) -> int:
        return i

    await enqueue_many([Job("noop", args={"i": i}) for i in range(250)])
    runner = await worker.run()
    assert runner.succeeded == 250
    assert calls["claim"] <= 10  # 3 batches of at most 100, then the empty claim of burst mode
    assert calls["finish"] <= 10


@pytest.mark.usefixtures("conn", "queue")
async def test_sync_actor_runs_in_a_thread() -> None:
    threads: list[int] = []
    worker = quiet(burst=True)

    @worker.actor
    def blocking(n: int) -> int:
        threads.append(threading.get_ident())
        time.sleep(0.01)
        return n * 2

    job = Job("blocking", args={"n": 21})
    await job.enqueue()
    await worker.run()
    assert threads
    assert threads[0] != threading.get_ident()
    result = await job.result
    assert result is not None
    assert result.data == 42


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("conn", "queue")
async def test_run_in_process_runs_in_another_process() -> None:
    router = Router()
    router.actor(run_in_process=True)(pid_actor)
    router.actor(run_in_process=True)(failing_in_process)
    worker = quiet(routers=[router], burst=True)
    ok = Job("pid_actor")
    bad = Job("failing_in_process", args={"word": "no"})
    await ok.enqueue()
    await bad.enqueue()
    runner = await worker.run()
    assert runner.processed == 2
    good = await ok.result
    assert good is not None
    assert good.success
    assert isinstance(good.data, int)
    assert good.data != os.getpid()
    failed = await bad.result
    assert failed is not None
    assert not failed.success
    assert "ValueError: child says no" in (failed.exception or "")


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("conn", "queue")
async def test_timed_out_sync_actors_do_not_hold_up_the_worker(
    broker: InMemoryMessageBroker,
) -> None:
    router = Router()
    router.actor(run_in_process=True, timeout=0.5)(sleeping_in_process)

    @router.actor(timeout=0.05)
    def sleeping_in_thread(seconds: float) -> None:
        time.sleep(seconds)

    worker = quiet(routers=[router], burst=True)
    await Job("sleeping_in_process", args={"seconds": 60}).enqueue()
    await Job("sleeping_in_thread", args={"seconds": 1}).enqueue()
    began = time.monotonic()
    async with asyncio.timeout(30):
        runner = await worker.run()
    assert time.monotonic() - began < 20  # the 60 s child was terminated, not awaited
    assert runner.dead == 2
    letters = await broker.list_dead("default")
    reasons = {letter.message.actor: letter.reason for letter in letters if letter.message}
    assert reasons == {
        "sleeping_in_process": DeadReason.TIMEOUT,
        "sleeping_in_thread": DeadReason.TIMEOUT,
    }


@pytest.mark.usefixtures("conn", "queue")
async def test_messages_limit_stops_the_worker(broker: InMemoryMessageBroker) -> None:
    worker = quiet(messages_limit=4, concurrency=2)

    @worker.actor
    async def job() -> None:
        pass

    for _ in range(10):
        await Job("job").enqueue()
    async with asyncio.timeout(5):
        runner = await worker.run()
    assert (runner.processed, runner.claimed) == (4, 4)
    assert (await broker.queue_stats("default")).ready == 6


@pytest.mark.usefixtures("conn", "queue")
async def test_recurring_job_repeats(broker: InMemoryMessageBroker) -> None:
    runs: list[float] = []
    worker = quiet(messages_limit=3)

    @worker.actor
    async def tick() -> None:
        runs.append(time.monotonic())

    message_id = await Job("tick", deferred_by=0.05).enqueue()
    async with asyncio.timeout(5):
        runner = await worker.run()
    assert runner.processed == 3
    assert len(runs) == 3
    assert all(later - earlier >= 0.04 for earlier, later in itertools.pairwise(runs))
    [scheduled] = await broker.list_messages("default", delayed=True)
    assert scheduled.id == message_id
    assert scheduled.run_at is not None
    assert scheduled.run_at > time.time()


@pytest.mark.usefixtures("conn", "queue")
async def test_unknown_actor_is_not_looped_hot_and_ends_as_dead_letter(
    broker: InMemoryMessageBroker, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "repid_django")
    worker = quiet(unknown_actor_delay=0.02, unknown_actor_max=3)

    @worker.actor
    async def known() -> None:
        pass

    began = time.monotonic()
    job_id = await Job("ghost").enqueue()
    running = start(worker)
    await until(lambda: broker.counters().dead == 1, what="dead-lettered")
    elapsed = time.monotonic() - began
    runner = await running.stop()
    # 3 returns to the queue with growing delays (0.02, 0.04, 0.08 s), then the dead letter:
    assert broker.counters().extra["claimed"] == 4
    assert broker.counters().extra["rejected"] == 3
    assert runner.unknown == 4
    assert runner.processed == 0
    assert elapsed >= 0.14
    [letter] = await broker.list_dead("default")
    assert (letter.id, letter.reason) == (job_id, DeadReason.UNKNOWN_ACTOR)
    assert "'ghost'" in (letter.error or "")
    assert "known" in (letter.error or "")
    assert "no actor named 'ghost'" in caplog.text


@pytest.mark.usefixtures("conn", "queue")
async def test_unknown_actor_goes_to_a_worker_that_has_it(
    broker: InMemoryMessageBroker, start: Start
) -> None:
    old = quiet(unknown_actor_delay=0.01, queues=["default"])
    new = quiet(messages_limit=1)
    done: list[str] = []

    @new.actor
    async def canary() -> None:
        done.append("new")

    await Job("canary").enqueue()
    running = start(old)
    await until(lambda: broker.counters().extra["rejected"] == 1, what="rejected by old worker")
    await running.stop()
    async with asyncio.timeout(5):
        await new.run()  # picks the job up once its short delay has passed
    assert done == ["new"]


@pytest.mark.usefixtures("conn", "queue")
async def test_shutdown_waits_for_running_and_returns_prefetched_at_once(
    broker: InMemoryMessageBroker, start: Start
) -> None:
    release = asyncio.Event()
    started: list[str] = []
    worker = quiet(concurrency=1, prefetch=2, graceful_shutdown_time=5)

    @worker.actor
    async def slow(n: int) -> int:
        started.append(str(n))
        await release.wait()
        return n

    ids = [await Job("slow", args={"n": n}, retries=2).enqueue() for n in range(3)]
    running = start(worker)
    await until(lambda: started and worker.runner and worker.runner.claimed == 3, what="claimed")
    worker.stop()
    await until(lambda: broker._queues["default"].n_ready == 2, what="prefetched returned")
    assert not running.task.done()  # still waiting for the running actor
    release.set()
    runner = await running.stop()
    assert (runner.processed, runner.succeeded, runner.rejected) == (1, 1, 2)
    left = await broker.list_messages("default")
    assert [m.id for m in left] == ids[1:]
    assert all(m.attempt == 0 for m in left)


@pytest.mark.usefixtures("conn", "queue")
async def test_shutdown_cancels_after_graceful_time_without_spending_a_retry(
    broker: InMemoryMessageBroker, start: Start
) -> None:
    cancelled: list[int] = []
    worker = quiet(concurrency=2, prefetch=1, graceful_shutdown_time=0.05)

    @worker.actor
    async def stuck(n: int) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    ids = [await Job("stuck", args={"n": n}, retries=3).enqueue() for n in range(3)]
    running = start(worker)
    await until(lambda: worker.runner and worker.runner.running == 2, what="two running")
    runner = await running.stop()
    assert sorted(cancelled) == [0, 1]
    assert (runner.processed, runner.rejected, runner.failed) == (0, 3, 0)
    stats = await broker.queue_stats("default")
    assert (stats.ready, stats.running, stats.dead) == (3, 0, 0)
    left = await broker.list_messages("default")
    assert [m.id for m in left] == ids
    assert [m.attempt for m in left] == [0, 0, 0]


@pytest.mark.usefixtures("conn", "queue")
async def test_sigterm_drains_and_a_second_signal_forces(
    broker: InMemoryMessageBroker, start: Start
) -> None:
    started = asyncio.Event()
    worker = Worker(handle_signals=[signal.SIGTERM], graceful_shutdown_time=30)

    @worker.actor
    async def stuck() -> None:
        started.set()
        await asyncio.Event().wait()

    await Job("stuck").enqueue()
    running = start(worker)
    async with asyncio.timeout(5):
        await started.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    await until(lambda: worker.runner and worker.runner.state == "draining", what="draining")
    assert not running.task.done()
    began = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    async with asyncio.timeout(5):
        runner = await running.task
    assert time.monotonic() - began < 5  # not the 30 s graceful time
    assert runner.rejected == 1
    assert (await broker.queue_stats("default")).ready == 1
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.usefixtures("conn", "queue")
async def test_burst_mode_exits_when_nothing_is_ready(broker: InMemoryMessageBroker) -> None:
    worker = quiet(burst=True, concurrency=4)
    attempts: list[int] = []

    @worker.actor(retry_policy=lambda retry_number=1: 0)
    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("again")

    await Job("flaky", retries=5).enqueue()
    await Job("flaky", deferred_until=time.time() + 3600).enqueue()
    async with asyncio.timeout(5):
        runner = await worker.run()
    assert len(attempts) == 3  # immediate retries are ready again, so burst runs them too
    assert runner.processed == 3
    assert (await broker.queue_stats("default")).delayed == 1


async def test_auto_declare(conn: Connection, broker: InMemoryMessageBroker) -> None:
    router = Router()

    @router.actor(queue="emails")
    async def send() -> None:
        pass

    await quiet(routers=[router], auto_declare=False, burst=True).run()
    assert await broker.list_queues() == []
    worker = quiet(routers=[router], burst=True)
    assert worker.queues == ["emails"]
    await worker.run()
    assert await broker.list_queues() == ["emails"]
    await Job("send", queue="emails").enqueue()
    assert (await worker.run()).processed == 1


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[JobEvent] = []
        self.beats: list[WorkerInfo] = []
        self.fail = fail

    async def on_events(self, events: Sequence[JobEvent]) -> None:
        if self.fail:
            raise RuntimeError("listener down")
        self.events.extend(events)

    async def on_heartbeat(self, info: WorkerInfo) -> None:
        if self.fail:
            raise RuntimeError("listener down")
        self.beats.append(info)


@pytest.mark.usefixtures("conn", "queue")
async def test_listeners_get_events_and_heartbeats_and_cannot_break_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good, bad = Recorder(), Recorder(fail=True)
    worker = quiet(burst=True, listeners=[bad, good])

    @worker.actor
    async def ok() -> int:
        return 1

    @worker.actor(retry_policy=lambda retry_number=1: 60)
    async def broken() -> None:
        raise ValueError("broken")

    await Job("ok").enqueue()
    await Job("broken", retries=1).enqueue()
    await Job("broken").enqueue()
    runner = await worker.run()
    assert runner.processed == 3
    kinds = sorted(event.kind for event in good.events)
    assert kinds == sorted(
        [EventKind.STARTED] * 3 + [EventKind.SUCCEEDED, EventKind.FAILED, EventKind.DEAD]
    )
    failed = next(e for e in good.events if e.kind is EventKind.FAILED)
    assert failed.retry_at is not None
    assert failed.retry_at > time.time() + 50
    dead = next(e for e in good.events if e.kind is EventKind.DEAD)
    assert dead.reason == DeadReason.FAILED
    assert "ValueError: broken" in (dead.error or "")
    assert good.beats[0].state == "running"
    assert good.beats[-1].state == "stopped"
    assert good.beats[-1].processed == 3
    assert "listener" in caplog.text
    assert "failed" in caplog.text


@pytest.mark.usefixtures("conn", "queue")
async def test_lost_lease_is_logged_and_reported(
    broker: InMemoryMessageBroker, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    worker = quiet(messages_limit=1, listeners=[recorder])

    @worker.actor
    async def victim() -> None:
        broker.expire_leases()  # as if the reaper had taken the job back meanwhile

    await Job("victim").enqueue()
    runner = await worker.run()
    assert runner.lease_lost == 1
    assert runner.succeeded == 0
    assert "lease lost" in caplog.text
    assert [e.kind for e in recorder.events][-1] is EventKind.LEASE_LOST
    assert (await broker.queue_stats("default")).ready == 1  # it will run again elsewhere


async def test_results_stored_apart() -> None:
    messages, results = InMemoryMessageBroker(), InMemoryMessageBroker()
    connection = Connection(messages, results_broker=results)
    assert connection.results_apart
    await messages.declare_queue("default")
    worker = quiet(burst=True, connection=connection)

    @worker.actor
    async def answer() -> int:
        return 42

    job = Job("answer", connection=connection)
    await job.enqueue()
    await worker.run()
    assert await messages.get_result(job.last_id or "") is None
    stored = await results.get_result(job.last_id or "")
    assert stored is not None
    assert stored.data == 42
    assert (await job.result) == stored


def test_worker_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Worker(concurrency=0)
    with pytest.raises(ValueError, match="messages_limit"):
        Worker(messages_limit=0)
    with pytest.raises(ValueError, match="graceful_shutdown_time"):
        Worker(graceful_shutdown_time=-1)


@pytest.mark.usefixtures("conn", "queue")
async def test_cancelling_the_worker_task_returns_its_jobs_at_once(
    broker: InMemoryMessageBroker,
) -> None:
    started = asyncio.Event()
    worker = quiet(concurrency=1, prefetch=1, graceful_shutdown_time=60)

    @worker.actor
    async def stuck() -> None:
        started.set()
        await asyncio.Event().wait()

    await Job("stuck", retries=1).enqueue()
    await Job("stuck", retries=1).enqueue()
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(5):
        await started.wait()
    task.cancel()
    async with asyncio.timeout(5):  # not the 60 s graceful time
        with pytest.raises(asyncio.CancelledError):
            await task
    left = await broker.list_messages("default")
    assert [m.attempt for m in left] == [0, 0]
    assert (await broker.queue_stats("default")).running == 0


@pytest.mark.usefixtures("conn", "queue")
async def test_an_actor_that_swallows_cancellation_cannot_hang_shutdown(
    broker: InMemoryMessageBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("repid_django.engine.worker.runner.CANCEL_WAIT", 0.05)
    release = asyncio.Event()
    worker = quiet(messages_limit=1, graceful_shutdown_time=0.01)

    @worker.actor
    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    await Job("stubborn").enqueue()
    async with asyncio.timeout(5):
        runner = await worker.run()
    release.set()
    assert runner.rejected == 1
    assert (await broker.queue_stats("default")).ready == 1


@pytest.mark.usefixtures("conn", "queue")
async def test_a_hung_listener_cannot_hang_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("repid_django.engine.worker.runner.LISTENER_STOP_WAIT", 0.05)

    class Hung:
        async def on_events(self, events: Sequence[JobEvent]) -> None:
            await asyncio.Event().wait()

        async def on_heartbeat(self, info: WorkerInfo) -> None:
            pass

    worker = quiet(burst=True, listeners=[Hung()])

    @worker.actor
    async def job() -> None:
        pass

    for _ in range(5):
        await Job("job").enqueue()
    async with asyncio.timeout(5):
        runner = await worker.run()
    assert runner.succeeded == 5
