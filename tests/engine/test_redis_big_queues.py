"""Operations that scale with a queue work in chunks and never block Redis for other clients.

The big tests (``slow``) flush a queue of 200,000 waiting jobs (and 5,000 delayed ones), delete
a queue of 200,000 waiting jobs and 200,000 dead letters, purge 200,000 dead letters and
requeue 100,000 (both ways the broker offers: the ids the admin lists page by page, and all),
through the broker methods that the admin's operations (``repid_django.ops``) call, while
another process PINGs the same Redis in a loop on a connection of its own: no PING may wait
more than 50 ms (one long script or one big ``DEL`` holds every client for its whole run: the
old whole-queue scripts made PINGs wait 0.2 to 3 s here). Each also checks the outcome and the
count. Requeueing is the slowest to test (each body is decoded and encoded again in Python),
hence 100,000 there.

The fast tests shrink the chunk to a few messages and check what chunking must keep: every
message removed or moved whole, counts right, a flush that ends while producers keep writing.

Waiting jobs are written with the broker's bulk enqueue, dead letters straight into the
queue's dead-letter keys (the layout of :mod:`repid_django.engine.brokers.redis.keys`, as
``bury`` in ``lua/common.lua`` writes them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from repid_django.engine.brokers.base import DeadReason, Outcome, OutcomeKind
from repid_django.engine.brokers.redis import admin as redis_admin
from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.message import Message, encode
from repid_django.engine.serializer import dumps

from .broker_helpers import put_raw

pytestmark = pytest.mark.redis

WAITING = 200_000
DELAYED = 5_000
DEAD = 200_000
REQUEUED = 100_000
MAX_WAIT = 0.050
"""Seconds: the longest any PING may wait while an operation runs."""
BATCH = 10_000
QUEUE = "big"
STATE = ("ready", "delayed", "msgs", "pri", "leases", "tokens", "lost", "seq", "wake")
"""A queue's keys of its waiting and running messages (``keys.py``)."""
PAGE = 500
"""``ops.PAGE``: the admin lists dead letters this many at a time."""

PINGER = """
import json, sys, threading, time
import redis

client = redis.Redis.from_url(sys.argv[1], socket_timeout=30)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
waits = []
while not stop.is_set():
    started = time.perf_counter()
    client.ping()
    waits.append(time.perf_counter() - started)
    if len(waits) == 1:
        print("pinging", flush=True)
    stop.wait(0.001)  # pacing: a PING is in flight within about 1 ms of any block
print(json.dumps({"count": len(waits), "worst": max(waits)}), flush=True)
"""


@contextmanager
def pinging(url: str, what: str) -> Iterator[None]:
    """PING Redis in a loop on a connection of its own while the block runs; fail when a PING
    waited longer than ``MAX_WAIT``.

    The pinger is a process of its own, as another client of the Redis would be: a thread of
    this process would also count the pauses of this process (its garbage collector holds
    the GIL for tens of milliseconds over 200,000 decoded messages), not only Redis's.
    """
    pinger = subprocess.Popen(
        [sys.executable, "-c", PINGER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert pinger.stdout is not None
        assert pinger.stdout.readline() == "pinging\n", "the pinger got no answer from Redis"
        started = time.perf_counter()
        yield
        elapsed = time.perf_counter() - started
        out, _ = pinger.communicate("stop\n", timeout=30)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    assert pinger.returncode == 0, out
    seen = json.loads(out)
    worst = seen["worst"]
    print(
        f"\n{what}: {elapsed:.2f} s, {seen['count']} PINGs, longest wait {worst * 1000:.1f} ms",
        end="",
    )
    assert worst <= MAX_WAIT, f"{what} blocked Redis: a PING waited {worst * 1000:.0f} ms"


@pytest.fixture
async def broker(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[RedisMessageBroker]:
    b = RedisMessageBroker(
        redis_url, prefix=key_prefix, dead_letter_max=DEAD, lease_ttl=60.0, socket_timeout=30.0
    )
    await b.connect()
    await b.declare_queue(QUEUE)
    try:
        yield b
    finally:
        await b.disconnect()


def job(message_id: str, **fields: Any) -> Message:
    return Message(id=message_id, actor="act", queue=QUEUE, **fields)


def base_of(broker: RedisMessageBroker) -> str:
    return f"{broker.prefix}:{{{QUEUE}}}:"


async def fill_waiting(broker: RedisMessageBroker, ready: int, delayed: int) -> None:
    later = time.time() + 3600
    jobs = [job(f"w{i}", priority=i % 3 - 1) for i in range(ready)]
    jobs += [job(f"l{i}", run_at=later + i) for i in range(delayed)]
    for start in range(0, len(jobs), BATCH):
        assert all(await broker.enqueue(jobs[start : start + BATCH]))


def fill_dead(client: redis.Redis, broker: RedisMessageBroker, count: int) -> None:
    """Dead letters ``d0``... as ``bury`` writes them, and one undecodable, ``junk``."""
    base = base_of(broker)
    now = time.time()
    info = dumps({"reason": "failed", "error": "boom", "failed_at": now, "lost": 0})
    body = encode(job("<id>", attempt=2, retries=2))
    assert body.count(b'"<id>"') == 1
    with client.pipeline(transaction=False) as pipe:
        for start in range(0, count, 1000):
            ids = [f"d{i}" for i in range(start, min(start + 1000, count))]
            pipe.zadd(base + "dead", {i: now + int(i[1:]) / 1e6 for i in ids})
            pipe.hset(base + "dmsg", mapping={i: body.replace(b"<id>", i.encode()) for i in ids})
            pipe.hset(base + "dinfo", mapping=dict.fromkeys(ids, info))
        pipe.zadd(base + "dead", {"junk": now})
        pipe.hset(base + "dmsg", "junk", b"\x80 not json")
        pipe.hset(base + "dinfo", "junk", info)
        pipe.execute()


async def all_dead_ids(broker: RedisMessageBroker) -> list[str]:
    """Every runnable dead letter's id, listed page by page as ``ops.requeue_dead`` does."""
    found: list[str] = []
    offset = 0
    while True:
        page = await broker.list_dead(QUEUE, offset=offset, limit=PAGE)
        found += [letter.id for letter in page if letter.message is not None]
        if len(page) < PAGE:
            return found
        offset += PAGE


def keys_of(client: redis.Redis, broker: RedisMessageBroker) -> set[str]:
    return {k.decode() for k in client.scan_iter(match=base_of(broker) + "*", count=1000)}


def members(client: redis.Redis, key: str) -> set[str]:
    """The members of a zset or the fields of a hash."""
    found: Any = client.zrange(key, 0, -1) if client.type(key) == b"zset" else client.hkeys(key)
    return {m.decode() for m in found}


def assert_whole(client: redis.Redis, broker: RedisMessageBroker) -> None:
    """No message is half there: each entry has its body, each body an entry."""
    base = base_of(broker)
    ready, delayed = members(client, base + "ready"), members(client, base + "delayed")
    running = members(client, base + "leases")
    assert members(client, base + "msgs") == ready | delayed | running
    assert not ready & delayed
    assert not running & (ready | delayed)
    assert members(client, base + "pri") <= delayed
    assert members(client, base + "tokens") == running
    dead = members(client, base + "dead")
    assert members(client, base + "dmsg") == dead
    assert members(client, base + "dinfo") == dead


# --------------------------------------------------------------- chunking (small chunks, fast)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(redis_admin, "CHUNK", 4)
    return 4


def between_chunks(
    monkeypatch: pytest.MonkeyPatch, broker: RedisMessageBroker, name: str, hook: Any
) -> list[int]:
    """Run ``await hook(k)`` before the k-th call of script ``name``; returns the call count
    (in a list, kept up to date)."""
    calls = [0]
    run = broker._script

    async def wrapped(script: str, keys: list[str], args: list[Any]) -> Any:
        if script == name:
            calls[0] += 1
            assert calls[0] <= 60, f"{name} did not end within 60 chunks"
            await hook(calls[0])
        return await run(script, keys, args)

    monkeypatch.setattr(broker, "_script", wrapped)
    return calls


async def test_flush_in_chunks_removes_what_waited_and_ends_under_producers(
    broker: RedisMessageBroker,
    redis_client: redis.Redis,
    small_chunks: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    later = time.time() + 3600
    await broker.enqueue([job(f"r{i}", priority=(i % 3 - 1) * 50) for i in range(12)])
    await broker.enqueue([job(f"l{i}", run_at=later + i) for i in range(6)])
    (running,) = await broker.claim([QUEUE], 1, 0)
    waiting = ({f"r{i}" for i in range(12)} | {f"l{i}" for i in range(6)}) - {running.message.id}
    added: list[str] = []

    async def producer(k: int) -> None:
        # More than a chunk between two chunks, into the last priority band (always ahead
        # of the flush), others and the delayed ones: a flush that ran until nothing waits,
        # or that took what lies ahead of it, would never end.
        if k > 1:
            assert_whole(redis_client, broker)
        fresh = [job(f"n{k}.{p}", priority=p) for p in (0, 100)]
        fresh += [job(f"n{k}.low{i}", priority=-100) for i in range(small_chunks + 1)]
        fresh.append(job(f"n{k}.later", run_at=later + 1.5))
        assert all(await broker.enqueue(fresh))
        added.extend(m.id for m in fresh)

    calls = between_chunks(monkeypatch, broker, "flush", producer)
    count = await broker.flush_queue(QUEUE)
    assert calls[0] >= (len(waiting) + 1) // small_chunks  # it did work in chunks
    assert_whole(redis_client, broker)
    base = base_of(broker)
    left = members(redis_client, base + "ready") | members(redis_client, base + "delayed")
    assert not left & waiting  # all that waited went; what was written meanwhile may stay
    assert left <= set(added)
    assert count == len(waiting) + len(added) - len(left)
    assert members(redis_client, base + "leases") == {running.message.id}
    assert await broker.finish([Outcome(running, OutcomeKind.ACK)]) == [True]


async def test_flush_in_chunks_of_messages_written_raw(
    broker: RedisMessageBroker, redis_client: redis.Redis, small_chunks: int
) -> None:
    # Written by hand (no FIFO sequence key): nothing tells new from old, all go.
    for _ in range(9):
        await put_raw(broker, QUEUE, encode(job("x")))
    assert await broker.flush_queue(QUEUE) == 9
    assert redis_client.exists(*(base_of(broker) + part for part in STATE)) == 0


async def test_requeue_and_purge_in_chunks_count_right(
    broker: RedisMessageBroker, redis_client: redis.Redis, small_chunks: int
) -> None:
    fill_dead(redis_client, broker, 30)
    assert await broker.enqueue([job("d3")]) == [True]  # live again: it stays dead
    asked = ["d1", "d2", "d3", "d1", "gone", "junk"] + [f"d{i}" for i in range(4, 12)]
    assert await broker.requeue_dead(QUEUE, asked) == 10
    assert_whole(redis_client, broker)
    assert await broker.requeue_dead(QUEUE) == 19  # d0 and d12 to d29 (not d3, nor junk)
    assert_whole(redis_client, broker)
    assert {d.id for d in await broker.list_dead(QUEUE)} == {"d3", "junk"}
    (back,) = [m for m in await broker.list_messages(QUEUE, limit=50) if m.id == "d1"]
    assert (back.attempt, back.run_at) == (0, None)
    fill_dead(redis_client, broker, 30)
    ids = [f"d{i}" for i in range(20)] + ["d5", "gone"]
    assert await broker.purge_dead(QUEUE, ids) == 20
    assert_whole(redis_client, broker)
    assert {d.id for d in await broker.list_dead(QUEUE, limit=50)} == {
        "junk",
        *(f"d{i}" for i in range(20, 30)),
    }


async def test_listings_longer_than_a_chunk(
    broker: RedisMessageBroker, redis_client: redis.Redis, small_chunks: int
) -> None:
    await broker.enqueue([job(f"r{i:02}") for i in range(11)])
    listed = [m.id for m in await broker.list_messages(QUEUE, offset=1, limit=9)]
    assert listed == [f"r{i:02}" for i in range(1, 10)]
    assert len(await broker.list_messages(QUEUE, limit=100)) == 11
    fill_dead(redis_client, broker, 10)
    letters = [d.id for d in await broker.list_dead(QUEUE, offset=2, limit=6)]
    assert letters == [f"d{i}" for i in range(7, 1, -1)]  # newest first
    assert len(await broker.list_dead(QUEUE, limit=100)) == 11


# ----------------------------------------------------------- 200,000 jobs, PINGs meanwhile


@pytest.mark.slow
async def test_flush_of_a_big_queue(
    broker: RedisMessageBroker, redis_url: str, redis_client: redis.Redis
) -> None:
    await fill_waiting(broker, WAITING, DELAYED)
    # One running job: the flush leaves it alone, and it can still be finished.
    (running,) = await broker.claim([QUEUE], 1, 0)
    with pinging(redis_url, "flush"):
        count = await broker.flush_queue(QUEUE)
    assert count == WAITING + DELAYED - 1
    stats = await broker.queue_stats(QUEUE)
    assert (stats.ready, stats.delayed, stats.running) == (0, 0, 1)
    base = base_of(broker)
    assert redis_client.hkeys(base + "msgs") == [running.message.id.encode()]
    assert redis_client.exists(base + "pri", base + "delayed", base + "ready", base + "wake") == 0
    assert await broker.finish([Outcome(running, OutcomeKind.ACK)]) == [True]
    assert redis_client.exists(*(base + part for part in STATE)) == 0


@pytest.mark.slow
async def test_delete_of_a_big_queue(
    broker: RedisMessageBroker, redis_url: str, redis_client: redis.Redis
) -> None:
    await fill_waiting(broker, WAITING, DELAYED)
    fill_dead(redis_client, broker, DEAD)
    with pinging(redis_url, "delete"):
        await broker.delete_queue(QUEUE)
    assert QUEUE not in await broker.list_queues()
    assert keys_of(redis_client, broker) == set()


@pytest.mark.slow
async def test_requeue_of_every_dead_letter_the_admin_way(
    broker: RedisMessageBroker, redis_url: str, redis_client: redis.Redis
) -> None:
    fill_dead(redis_client, broker, REQUEUED)
    # A dead letter whose id is live again (enqueued anew) stays dead: no second copy.
    assert await broker.enqueue([job("d7")]) == [True]
    with pinging(redis_url, "requeue all (the admin: list every page, requeue those ids)"):
        ids = await all_dead_ids(broker)
        count = await broker.requeue_dead(QUEUE, ids)
    assert len(ids) == REQUEUED
    assert count == REQUEUED - 1
    stats = await broker.queue_stats(QUEUE)
    assert (stats.ready, stats.dead) == (REQUEUED, 2)
    assert {d.id for d in await broker.list_dead(QUEUE)} == {"d7", "junk"}
    got = await broker.claim([QUEUE], 3, 0)
    assert [d.message.attempt for d in got] == [0, 0, 0]


@pytest.mark.slow
async def test_requeue_of_every_dead_letter_without_ids(
    broker: RedisMessageBroker, redis_url: str, redis_client: redis.Redis
) -> None:
    fill_dead(redis_client, broker, REQUEUED)
    with pinging(redis_url, "requeue all (ids=None)"):
        count = await broker.requeue_dead(QUEUE)
    assert count == REQUEUED
    stats = await broker.queue_stats(QUEUE)
    assert (stats.ready, stats.dead) == (REQUEUED, 1)  # the undecodable one stays
    (left,) = await broker.list_dead(QUEUE)
    assert (left.id, left.reason, left.message) == ("junk", DeadReason.FAILED, None)


@pytest.mark.slow
async def test_purge_of_every_dead_letter(
    broker: RedisMessageBroker, redis_url: str, redis_client: redis.Redis
) -> None:
    fill_dead(redis_client, broker, DEAD)
    with pinging(redis_url, "purge all"):
        count = await broker.purge_dead(QUEUE)
    assert count == DEAD + 1
    assert (await broker.queue_stats(QUEUE)).dead == 0
    assert keys_of(redis_client, broker) == set()
