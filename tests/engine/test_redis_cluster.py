"""The Redis broker on a real 3-primary Redis Cluster: queues in different slots (and on
different primaries) consumed by one worker, the admin's reads and writes across slots, and
keys declared per script so that every call runs on one node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from repid_django import Connection, Repid, Router, Worker
from repid_django.engine.brokers.base import DeadReason, Outcome, OutcomeKind
from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.brokers.redis.cluster import slot_of
from repid_django.engine.job import Job
from repid_django.engine.limits import Limits

from ..topologies import ClusterServers
from .broker_helpers import msg

pytestmark = pytest.mark.redis
QUEUES = ["alpha", "beta", "gamma", "delta", "epsilon"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterServers]:
    with ClusterServers() as servers:
        yield servers


@pytest.fixture
async def broker(cluster: ClusterServers, key_prefix: str) -> AsyncIterator[RedisMessageBroker]:
    b = RedisMessageBroker(cluster.url, prefix=key_prefix, lease_ttl=5.0, reaper_interval=0.5)
    await b.connect()
    yield b
    await b.disconnect()


def owners(cluster: ClusterServers, broker: RedisMessageBroker) -> set[int]:
    return {cluster.node_for_slot(slot_of(broker._base(q)))[1] for q in QUEUES}


async def test_one_worker_runs_queues_on_every_primary(
    cluster: ClusterServers, broker: RedisMessageBroker
) -> None:
    assert len(owners(cluster, broker)) == 3  # the queues really live on three primaries
    router, ran = Router(), []

    async def run(n: int) -> int:
        ran.append(n)
        return n

    for queue in QUEUES:
        router.actor(name=f"job_{queue}", queue=queue)(run)

    app = Repid(Connection(broker))
    async with app.magic():
        jobs = [
            Job(f"job_{q}", q, args={"n": i * len(QUEUES) + k})
            for i in range(20)
            for k, q in enumerate(QUEUES)
        ]
        for job in jobs:
            await job.enqueue()
        worker = Worker(routers=[router], messages_limit=len(jobs), concurrency=10)
        await asyncio.wait_for(worker.run(), 30)
        assert sorted(ran) == list(range(len(jobs)))  # each job once
        results = [await j.result for j in jobs[:5]]
        assert [r.data for r in results if r is not None] == [0, 1, 2, 3, 4]
        for queue in QUEUES:
            stats = await broker.queue_stats(queue)
            assert (stats.ready, stats.running, stats.dead) == (0, 0, 0)


async def test_an_idle_claim_across_slots_wakes_on_any_queue(broker: RedisMessageBroker) -> None:
    for queue in QUEUES:
        await broker.declare_queue(queue)

    async def later() -> None:
        await asyncio.sleep(0.3)
        await broker.enqueue([msg("late", "epsilon")])

    task = asyncio.create_task(later())
    started = time.monotonic()
    got = await broker.claim(QUEUES, 10, 5.0)
    took = time.monotonic() - started
    await task
    assert [d.message.id for d in got] == ["late"]
    assert took < 2.0  # woken by the push (one BLPOP per slot), not by the 5 s timeout
    assert await broker.finish([Outcome(got[0], OutcomeKind.ACK)]) == [True]


async def test_idle_waits_keep_their_blocking_connections_across_wake_ups(
    cluster: ClusterServers, broker: RedisMessageBroker
) -> None:
    """A wake-up in one slot leaves the other slots' pending BLPOPs to the next wait instead of
    cancelling them (a cancelled read drops its connection): an idle worker woken again and
    again opens no new connection."""
    for queue in QUEUES:
        await broker.declare_queue(queue)
    groups = len(broker._slot_groups(QUEUES))
    assert groups > 1
    nodes = [redis.Redis(host, port) for host, port in cluster.primaries()]

    def connections() -> int:
        return sum(int(node.info("stats")["total_connections_received"]) for node in nodes)

    async def woken(round_: int) -> None:
        claim = asyncio.create_task(broker.claim(QUEUES, 10, 5.0))
        pending = broker._blocking().here().pops
        while len(pending) < groups:  # the claim waits on every slot
            assert not claim.done()
            await asyncio.sleep(0.005)
        await broker.enqueue([msg(f"wake-{round_}", QUEUES[round_ % len(QUEUES)])])
        got = await asyncio.wait_for(claim, 5)
        assert [d.message.id for d in got] == [f"wake-{round_}"]
        assert await broker.finish([Outcome(got[0], OutcomeKind.ACK)]) == [True]

    try:
        await woken(0)  # the first wait opens a blocking connection per slot
        before = connections()
        for round_ in range(1, 21):
            await woken(round_)
        assert connections() - before <= 1, "idle wake-ups reopened blocking connections"
    finally:
        for node in nodes:
            node.close()


async def test_admin_reads_and_writes_across_slots(broker: RedisMessageBroker) -> None:
    for queue in QUEUES:
        await broker.declare_queue(queue)
    assert set(QUEUES) <= set(await broker.list_queues())
    await broker.enqueue([msg(f"{q}-{i}", q) for q in QUEUES for i in range(3)])
    got = await broker.claim(QUEUES, 100, 0)
    assert len(got) == 15
    # A batch of outcomes over five slots: one finish call per slot group.
    outcomes = [
        Outcome(d, OutcomeKind.DEAD, reason=DeadReason.FAILED, error="boom")
        if d.message.id.endswith("-0")
        else Outcome(d, OutcomeKind.ACK)
        for d in got
    ]
    assert all(await broker.finish(outcomes))
    for queue in QUEUES:
        (letter,) = await broker.list_dead(queue)
        assert (letter.id, letter.error) == (f"{queue}-0", "boom")
    assert await broker.requeue_dead("alpha") == 1
    assert await broker.purge_dead("beta") == 1
    assert (await broker.queue_stats("alpha")).ready == 1
    assert [m.id for m in await broker.list_messages("alpha")] == ["alpha-0"]
    await broker.pause_queue("gamma")
    await broker.set_limits("delta", {None: Limits(2, None)})
    assert (await broker.queue_stats("gamma")).paused
    assert (await broker.get_limits("delta"))[None].concurrency == 2
    await broker.resume_queue("gamma")
    assert await broker.flush_queue("alpha") == 1
    await broker.delete_queue("epsilon")
    assert "epsilon" not in await broker.list_queues()


async def test_every_call_declares_keys_of_one_slot(
    broker: RedisMessageBroker, cluster: ClusterServers
) -> None:
    """A script's KEYS are its queue's base and then every fixed key it may touch: so a
    Cluster refuses (TRYAGAIN) to run it while that slot is split by a migration."""
    from repid_django.engine.brokers.redis import scripts

    keys = broker._declare(scripts.script("claim"), [broker._base("alpha")])
    assert keys[0] == broker._base("alpha")
    assert {k.removeprefix(keys[0]) for k in keys[1:]} >= {"ready", "msgs", "leases", "tokens"}
    assert len({slot_of(k) for k in keys}) == 1


def test_deploy_check_reads_a_cluster(cluster: ClusterServers) -> None:
    """``check --deploy`` reaches a Cluster (no pipelining across nodes) and reads its
    settings: persistence is off on the test cluster, so W004 and nothing else."""
    from repid_django.checks import probe_redis

    assert [m.id for m in probe_redis(cluster.url)] == ["repid_django.W004"]
    down = probe_redis("redis+cluster://127.0.0.1:1,127.0.0.1:2", timeout=0.5)
    assert [m.id for m in down] == ["repid_django.W001"]


async def test_limits_cancel_progress_and_schedules_on_a_cluster(
    broker: RedisMessageBroker,
) -> None:
    # A schedule's tick fires once; saved schedules live in the registry's slot.
    assert await broker.fire("alpha", "nightly", 1000.0, msg("s1", "alpha")) is True
    assert await broker.fire("alpha", "nightly", 1000.0, msg("s2", "alpha")) is False
    assert await broker.schedule_runs("alpha", ["nightly"]) == {"nightly": 1000.0}
    await broker.save_schedule("x", {"actor": "a", "cron": "* * * * *"})
    assert "x" in await broker.list_schedules()
    assert await broker.remove_schedule("x") is True
    # A concurrency limit of 1 on one queue, claimed together with a queue in another slot.
    await broker.set_limits("beta", {None: Limits(1, None)})
    await broker.enqueue([msg(f"b{i}", "beta") for i in range(3)])
    got = await broker.claim(["alpha", "beta"], 10, 0)
    assert sorted(d.message.id for d in got) == ["b0", "s1"]
    (running,) = [d for d in got if d.message.queue == "beta"]
    await broker.set_progress("beta", "b0", {"done": 50})
    assert await broker.get_progress("beta", ["b0"]) == {"b0": {"done": 50}}
    assert await broker.cancel_job("beta", "b0") == "stopping"
    assert broker.keeper.poll_stops() == 1  # the lease keeper sees the stop (per slot group)
    assert all(await broker.finish([Outcome(d, OutcomeKind.ACK) for d in got]))
    assert running.message.id == "b0"
    (following,) = await broker.claim(["alpha", "beta"], 10, 1.0)
    assert following.message.id == "b1"  # the freed slot let the next one in


def test_enqueue_from_threads_loops_and_a_forked_child(
    cluster: ClusterServers, key_prefix: str
) -> None:
    """The ways Django code enqueues: sync views on WSGI threads, ``async_to_sync``, a second
    ``asyncio.run``, a forked child (gunicorn's preload), all on one broker, over a Cluster."""
    import os
    import threading

    from asgiref.sync import async_to_sync

    broker = RedisMessageBroker(cluster.url, prefix=key_prefix)
    errors: list[BaseException] = []

    def view(n: int) -> None:
        try:
            assert broker.enqueue_sync([msg(f"t{n}", QUEUES[n % 5])]) == [True]
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=view, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert async_to_sync(broker.enqueue)([msg("a2s", "beta")]) == [True]
    for n in range(2):  # a new event loop each time: the clients of the old one are gone
        assert asyncio.run(broker.enqueue([msg(f"loop{n}", "gamma")])) == [True]
    pid = os.fork()
    if pid == 0:  # the child: the parent's sockets are not its own
        code = 0 if broker.enqueue_sync([msg("child", "delta")]) == [True] else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    async def everything() -> set[str]:
        got = await broker.claim(QUEUES, 100, 0)
        await broker.finish([Outcome(d, OutcomeKind.ACK) for d in got])
        await broker.disconnect()
        return {d.message.id for d in got}

    expected = {f"t{n}" for n in range(8)} | {"a2s", "loop0", "loop1", "child"}
    assert asyncio.run(everything()) == expected
