"""Cancelling jobs (waiting, running async, running sync, buffered) and progress reports, on
both brokers; the Redis worker learns of a cancel by its lease keeper's poll (half a second)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest
import redis

from repid_django import (
    Connection,
    DeadReason,
    Job,
    MessageBroker,
    RedisMessageBroker,
    Repid,
    Router,
    Worker,
    current_job,
    set_progress,
    set_progress_sync,
)

from ._helpers import Running, until

STOP_BOUND = 1.5
"""Seconds from cancel_job to the actor's end: the keeper polls every 0.5 s, plus slack."""


async def test_cancel_a_waiting_job_removes_it(contract_broker: MessageBroker) -> None:
    connection = Connection(contract_broker)
    await contract_broker.declare_queue("default")
    job_id = await Job("never", connection=connection).enqueue()
    assert await contract_broker.cancel_job("default", job_id) == "removed"
    assert await contract_broker.cancel_job("default", job_id) == "unknown"
    assert (await contract_broker.queue_stats("default")).ready == 0


async def test_cancel_running_async_and_sync_actors(contract_broker: MessageBroker) -> None:
    broker = contract_broker
    router = Router()
    seen: dict[str, object] = {}
    sync_may_end = threading.Event()

    @router.actor(name="slow_async")
    async def slow_async() -> None:
        seen["async started"] = time.monotonic()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen["async cancelled"] = current_job().cancelled
            raise

    @router.actor(name="slow_sync")
    def slow_sync() -> str:
        seen["sync started"] = time.monotonic()
        job = current_job()
        while not job.cancelled:  # cooperative: it looks at the flag
            if sync_may_end.wait(0.01):
                return "ended on its own"
        seen["sync saw the flag"] = time.monotonic()
        return "stopped early"

    async with Repid(Connection(broker)).magic():
        await broker.declare_queue("default")
        worker = Worker(routers=[router], handle_signals=[], concurrency=4)
        running = Running(worker)
        await running.started()
        a = await Job("slow_async").enqueue()
        s = await Job("slow_sync").enqueue()
        await until(lambda: "async started" in seen and "sync started" in seen, what="both run")
        asked = time.monotonic()
        assert await broker.cancel_job("default", a) == "stopping"
        assert await broker.cancel_job("default", s) == "stopping"
        await until(
            lambda: worker.runner is not None and worker.runner.cancelled == 2,
            within=STOP_BOUND + 2,
            what="both recorded as cancelled",
        )
        took = time.monotonic() - asked
        assert seen["async cancelled"] is True
        assert float(seen["sync saw the flag"]) - asked < STOP_BOUND  # type: ignore[arg-type]
        runner = await running.stop()
    assert took < STOP_BOUND + 0.5
    assert runner.failed == 0
    assert runner.retried == 0
    dead = {d.id: d for d in await broker.list_dead("default")}
    assert {dead[a].reason, dead[s].reason} == {DeadReason.CANCELLED}


async def test_progress_is_kept_and_read(contract_broker: MessageBroker) -> None:
    broker = contract_broker
    router = Router()
    done = asyncio.Event()

    @router.actor(name="images")
    async def images() -> None:
        await set_progress(0.4, "40 of 100 images")
        await done.wait()

    @router.actor(name="rows")
    def rows() -> None:
        set_progress_sync(1.0, "all rows")

    async with Repid(Connection(broker)).magic():
        await broker.declare_queue("default")
        worker = Worker(routers=[router], handle_signals=[])
        running = Running(worker)
        await running.started()
        i = await Job("images").enqueue()
        r = await Job("rows").enqueue()
        got: dict[str, dict[str, object]] = {}

        async def both() -> bool:
            got.update(await broker.get_progress("default", [i, r]))
            return len(got) == 2

        deadline = time.monotonic() + 5
        while not await both():
            assert time.monotonic() < deadline, got
            await asyncio.sleep(0.01)
        assert got[i]["value"] == 0.4
        assert got[i]["text"] == "40 of 100 images"
        assert got[r]["value"] == 1.0
        done.set()
        await running.stop()
    with pytest.raises(RuntimeError, match="only available inside an actor"):
        current_job()
    with pytest.raises(RuntimeError, match="only available inside an actor"):
        await set_progress(0.5)


def test_bad_progress_is_refused() -> None:
    from repid_django.engine.worker.context import _progress

    for bad in (1.5, -0.1, float("nan"), True, "half"):
        with pytest.raises((ValueError, TypeError), match="progress"):
            _progress(bad, "")  # type: ignore[arg-type]


@pytest.mark.redis
async def test_a_cancelled_job_whose_worker_died_is_not_run_again(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    dying = RedisMessageBroker(redis_url, prefix=key_prefix, lease_ttl=1.0, reaper_interval=0.2)
    other = RedisMessageBroker(redis_url, prefix=key_prefix, lease_ttl=1.0, reaper_interval=0.2)
    try:
        await dying.declare_queue("default")
        job_id = await Job("x", connection=Connection(dying)).enqueue()
        (held,) = await dying.claim(["default"], 1, 0)
        assert await other.cancel_job("default", job_id) == "stopping"
        await dying.disconnect()  # the worker dies before it saw the request
        assert await other.claim(["default"], 1, 1.0 + 0.2 + 1.0) == []
        (letter,) = await other.list_dead("default")
        assert letter.id == held.message.id
        assert letter.reason is DeadReason.CANCELLED
        assert redis_client.zcard(f"{key_prefix}:{{default}}:stop") == 0
    finally:
        await other.disconnect()


def busy_in_process(path: str) -> None:
    """Runs in a child process: says who it is, then works for a minute."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(str(os.getpid()))
    time.sleep(60)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
async def test_cancel_and_timeout_terminate_a_process_actor(
    contract_broker: MessageBroker, tmp_path: Path
) -> None:
    broker = contract_broker
    router = Router()
    router.actor(run_in_process=True, name="busy")(busy_in_process)
    # A timeout the child outlives by far, but long enough for the child process to start and
    # say who it is on a loaded machine (a spawn takes a second or more there).
    router.actor(run_in_process=True, name="busy_short", timeout=4.0)(busy_in_process)
    pids: dict[str, int] = {}

    def pid_of(name: str) -> bool:
        path = tmp_path / name
        if path.exists() and path.read_text():
            pids[name] = int(path.read_text())
        return name in pids

    async with Repid(Connection(broker)).magic():
        await broker.declare_queue("default")
        worker = Worker(routers=[router], handle_signals=[], concurrency=2)
        running = Running(worker)
        await running.started()
        job_id = await Job("busy", args={"path": str(tmp_path / "cancelled")}).enqueue()
        await Job("busy_short", args={"path": str(tmp_path / "timed_out")}).enqueue()
        await until(
            lambda: pid_of("cancelled") and pid_of("timed_out"),
            within=30,
            what="both children started",
        )
        asked = time.monotonic()
        assert await broker.cancel_job("default", job_id) == "stopping"
        await until(
            lambda: not alive(pids["cancelled"]),
            within=STOP_BOUND + 2,
            what="the cancelled job's process was terminated",
        )
        took = time.monotonic() - asked
        await until(
            lambda: not alive(pids["timed_out"]),
            within=10,
            what="the timed-out job's process was terminated",
        )
        await until(
            lambda: worker.runner is not None and worker.runner.dead == 2,
            within=5,
            what="both outcomes recorded",
        )
        runner = await running.stop()
    assert took < STOP_BOUND + 1.0
    assert runner.cancelled == 1
    reasons = {d.id: d.reason for d in await broker.list_dead("default")}
    assert reasons[job_id] is DeadReason.CANCELLED
    assert DeadReason.TIMEOUT in reasons.values()
