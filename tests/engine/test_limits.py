"""Concurrency and rate limits, global across workers, on both brokers (several workers in one
process here; tests/e2e/test_limits_e2e.py runs worker processes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis

from repid_django import Connection, Job, MessageBroker, RedisMessageBroker, Router, Worker
from repid_django.engine.limits import LimitError, Limits, parse_rate

from ._helpers import Running, until


class Log:
    """Start and end times of each run, and the most running at once."""

    def __init__(self) -> None:
        self.starts: list[tuple[float, str]] = []
        self.running = 0
        self.most = 0
        self.done: list[str] = []

    async def run(self, tag: str, seconds: float) -> None:
        self.starts.append((time.monotonic(), tag))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.running -= 1
            self.done.append(tag)


@pytest.fixture
async def workers(contract_broker: MessageBroker) -> AsyncIterator[list[Running]]:
    started: list[Running] = []
    yield started
    for running in started:
        if not running.task.done():
            await running.stop()


def start(router: Router, broker: MessageBroker, count: int, started: list[Running]) -> None:
    for _ in range(count):
        worker = Worker(
            routers=[router],
            handle_signals=[],
            concurrency=10,
            connection=Connection(broker),
            claim_wait=0.5,
        )
        started.append(Running(worker))


def test_rates_parse_and_bad_limits_are_refused() -> None:
    assert parse_rate("100/m") == (100, 60_000)
    assert parse_rate("20/s") == (20, 1000)
    assert parse_rate("5/10s") == (5, 10_000)
    for bad in ("100", "ten/m", "0/s", "5/0s", "5/w"):
        with pytest.raises(LimitError, match="rate limit"):
            parse_rate(bad)
    with pytest.raises(LimitError, match="concurrency limit must be an int >= 1"):
        Limits(concurrency=0)
    with pytest.raises(LimitError, match="rate_limit_key needs a rate_limit"):
        Limits(rate_key="customer_id")
    router = Router()
    with pytest.raises(LimitError, match="actor 'x': invalid rate limit"):
        router.actor(name="x", rate_limit="lots")(lambda: None)


async def test_limits_are_kept_per_queue_and_actor(contract_broker: MessageBroker) -> None:
    broker = contract_broker
    await broker.declare_queue("default")
    await broker.set_limits(
        "default",
        {None: Limits(concurrency=5, rate="100/m"), "send": Limits(2, "20/s", "customer_id")},
    )
    found = await broker.get_limits("default")
    assert found[None] == Limits(5, "100/60s")
    assert found["send"] == Limits(2, "20/1s", "customer_id")
    await broker.set_limits("default", {"send": Limits()})
    assert set(await broker.get_limits("default")) == {None}


async def test_a_concurrency_limit_holds_across_workers_and_others_pass(
    contract_broker: MessageBroker, workers: list[Running]
) -> None:
    broker = contract_broker
    log = Log()
    router = Router()

    @router.actor(name="limited", concurrency_limit=2)
    async def limited(n: int) -> None:
        await log.run(f"limited {n}", 0.05)

    @router.actor(name="free")
    async def free(n: int) -> None:
        await log.run(f"free {n}", 0.0)

    connection = Connection(broker)
    await broker.declare_queue("default")
    start(router, broker, 3, workers)
    for running in workers:
        await running.started()
    for n in range(30):
        await Job("limited", args={"n": n}, connection=connection).enqueue()
    for n in range(10):  # behind thirty limited jobs in the queue: they must not wait for them
        await Job("free", args={"n": n}, connection=connection).enqueue()
    await until(
        lambda: sum(t.startswith("free") for t in log.done) == 10,
        within=3.0,
        what="the unlimited jobs ran past the held ones",
    )
    assert sum(t.startswith("limited") for t in log.done) < 20  # the limited ones still wait
    await until(lambda: len(log.done) == 40, within=20.0, what="every job ran")
    starts = sorted(t for t, tag in log.starts if tag.startswith("limited"))
    assert len(starts) == 30
    # Never more than two limited runs at once (the log counts every run, of any worker).
    limited_most = max_overlap(log, "limited", 0.05)
    assert limited_most <= 2, limited_most
    assert limited_most == 2  # and the limit is used


def max_overlap(log: Log, prefix: str, seconds: float) -> int:
    events: list[tuple[float, int]] = []
    for at, tag in log.starts:
        if tag.startswith(prefix):
            events += [(at, 1), (at + seconds * 0.9, -1)]
    most = now = 0
    for _, step in sorted(events):
        now += step
        most = max(most, now)
    return most


async def test_a_queue_limit_and_a_rate_limit(
    contract_broker: MessageBroker, workers: list[Running]
) -> None:
    broker = contract_broker
    log = Log()
    router = Router()

    @router.actor(name="tick", rate_limit="10/s")
    async def tick(n: int) -> None:
        await log.run(f"tick {n}", 0.0)

    connection = Connection(broker)
    await broker.declare_queue("default")
    start(router, broker, 2, workers)
    for running in workers:
        await running.started()
    began = time.monotonic()
    for n in range(25):
        await Job("tick", args={"n": n}, connection=connection).enqueue()
    await until(lambda: len(log.done) == 25, within=10.0, what="every rate-limited job ran")
    times = sorted(t - began for t, _ in log.starts)
    # A token bucket of 10: a burst of 10, then 10 per second.
    for i, at in enumerate(times):
        assert at >= (i + 1 - 10) / 10 - 0.05, (i, at, times)
    assert times[-1] < (25 - 10) / 10 + 1.0  # and not slower than the rate (no hot loop)


async def test_a_rate_limit_keyed_by_an_argument_does_not_let_one_tenant_starve_another(
    contract_broker: MessageBroker, workers: list[Running]
) -> None:
    broker = contract_broker
    log = Log()
    router = Router()

    @router.actor(name="sync_shop", rate_limit="5/s", rate_limit_key="shop")
    async def sync_shop(shop: str, n: int) -> None:
        await log.run(f"{shop} {n}", 0.0)

    connection = Connection(broker)
    await broker.declare_queue("default")
    for n in range(60):  # a big shop's backlog first
        await Job("sync_shop", args={"shop": "big", "n": n}, connection=connection).enqueue()
    for n in range(5):
        await Job("sync_shop", args={"shop": "small", "n": n}, connection=connection).enqueue()
    start(router, broker, 2, workers)
    await until(
        lambda: sum(t.startswith("small") for t in log.done) == 5,
        within=3.0,
        what="the small shop's jobs ran despite the big one's backlog",
    )
    assert sum(t.startswith("big") for t in log.done) <= 5 + 5 * 3 + 1


@pytest.mark.redis
async def test_held_jobs_cost_no_hot_loop_and_a_dead_workers_slot_comes_back(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    dying = RedisMessageBroker(redis_url, prefix=key_prefix, lease_ttl=1.0, reaper_interval=0.2)
    other = RedisMessageBroker(redis_url, prefix=key_prefix, lease_ttl=1.0, reaper_interval=0.2)
    try:
        await dying.declare_queue("default")
        await dying.set_limits("default", {"one": Limits(concurrency=1)})
        connection = Connection(dying)
        first = await Job("one", connection=connection).enqueue()
        second = await Job("one", connection=connection).enqueue()
        (held,) = await dying.claim(["default"], 10, 0)
        assert held.message.id == first
        redis_client.config_resetstat()
        assert await other.claim(["default"], 10, 1.0) == []  # waits, it does not spin
        calls = redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        # In that second: a claim per reaper_interval (0.2 s) while it waits, and the two lease
        # keepers' reaps, extensions and stop polls: about 20 scripts. A held job that made its
        # claimer spin would make thousands.
        assert calls <= 30, calls
        await dying.disconnect()  # the holder dies: its slot comes back with its lease
        (freed,) = await other.claim(["default"], 10, 1.0 + 0.2 + 1.5)
        assert freed.message.id in {first, second}
    finally:
        await other.disconnect()


@pytest.mark.redis
async def test_a_rate_limited_claim_waits_for_the_next_token_instead_of_spinning(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    broker = RedisMessageBroker(redis_url, prefix=key_prefix)
    try:
        await broker.declare_queue("default")
        await broker.set_limits("default", {"slow": Limits(rate="2/s")})
        connection = Connection(broker)
        for _ in range(3):
            await Job("slow", connection=connection).enqueue()
        assert len(await broker.claim(["default"], 10, 0)) == 2  # the burst of two tokens
        redis_client.config_resetstat()
        began = time.monotonic()
        assert await broker.claim(["default"], 10, 0.3) == []  # the next token is 0.5 s away
        assert time.monotonic() - began >= 0.25  # it waited out its wait
        calls = redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        assert calls <= 5, calls  # the claim told it when the next token comes: no spinning
    finally:
        await broker.disconnect()


async def test_a_worker_sets_its_actors_and_queue_limits_when_it_starts(
    contract_broker: MessageBroker, workers: list[Running]
) -> None:
    broker = contract_broker
    router = Router()
    router.actor(name="capped", concurrency_limit=3, rate_limit="9/m")(lambda: None)
    router.actor(name="plain")(lambda: None)
    await broker.declare_queue("default")
    await broker.set_limits("default", {"plain": Limits(concurrency=1)})  # an older version's
    worker = Worker(
        routers=[router],
        handle_signals=[],
        connection=Connection(broker),
        queue_limits={"default": Limits(concurrency=7)},
    )
    workers.append(Running(worker))
    await workers[-1].started()
    assert await broker.get_limits("default") == {
        None: Limits(concurrency=7),
        "capped": Limits(3, "9/60s"),
    }
