"""Pausing a queue: workers stop taking its jobs at their next claim (running ones finish),
enqueue keeps accepting, and resuming wakes the workers; on both brokers."""

from __future__ import annotations

import asyncio

from repid_django import Connection, Job, MessageBroker, Repid, Router, Worker

from ._helpers import Running, until


async def test_pause_stops_new_starts_and_resume_runs_everything(
    contract_broker: MessageBroker,
) -> None:
    broker = contract_broker
    connection = Connection(broker)
    router = Router()
    started: list[int] = []
    release = asyncio.Event()

    @router.actor(name="work")
    async def work(n: int) -> None:
        started.append(n)
        await release.wait()

    async with Repid(connection).magic():
        await broker.declare_queue("default")
        worker = Worker(routers=[router], handle_signals=[], concurrency=2, claim_wait=0.2)
        running = Running(worker)
        await running.started()
        await Job("work", args={"n": 0}).enqueue()
        await until(lambda: started == [0], what="the first job started")
        await broker.pause_queue("default")
        assert (await broker.queue_stats("default")).paused
        for n in range(1, 50):  # enqueue still accepts while paused
            await Job("work", args={"n": n}).enqueue()
        release.set()  # the running job finishes
        await asyncio.sleep(1.0)  # a whole second of claims: none may start a paused job
        assert started == [0]
        stats = await broker.queue_stats("default")
        assert stats.ready == 49
        assert stats.paused
        await broker.resume_queue("default")
        await until(lambda: len(started) == 50, what="every job ran after resume")
        assert not (await broker.queue_stats("default")).paused
        runner = await running.stop()
    assert runner.succeeded == 50
