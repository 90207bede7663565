"""Enqueue from every kind of caller, on a real redis-server (DESIGN.md guarantee 9).

Each test uses one ``Repid(Connection(RedisMessageBroker(url)))`` the way a user's process does:
created once, then called from several event loops, threads and processes; nothing is reset
between the calls. Every acknowledged job must then run exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import uvloop
from asgiref.sync import async_to_sync

from repid_django import Connection, Job, RedisMessageBroker, Repid, enqueue_many

from ..redis_server import RedisServer
from .callers import run_all

pytestmark = pytest.mark.redis


@pytest.fixture
def app(redis_url: str, key_prefix: str) -> Iterator[Repid]:
    app = Repid(Connection(RedisMessageBroker(redis_url, prefix=key_prefix)))
    yield app
    app.connection.close()


def mark(token: str) -> Job:
    return Job("mark", args={"token": token})


def test_asyncio_run_twice_with_one_app(app: Repid, redis_url: str, key_prefix: str) -> None:
    async def send(token: str) -> str:
        async with app.magic():
            return await mark(token).enqueue()

    ids = [asyncio.run(send("first")), asyncio.run(send("second")), uvloop.run(send("uvloop"))]
    ids.append(asyncio.run(send("third")))
    assert len(set(ids)) == 4
    assert run_all(redis_url, key_prefix, 4) == {"first": 1, "second": 1, "uvloop": 1, "third": 1}


def test_async_to_sync_again_and_again_then_sync(
    app: Repid, redis_url: str, key_prefix: str
) -> None:
    connection = app.connection

    async def send(token: str) -> str:
        return await Job("mark", args={"token": token}, connection=connection).enqueue()

    tokens = [f"a2s-{i}" for i in range(5)]
    for token in tokens:
        async_to_sync(send)(token)
    # A plain sync call after the loops of async_to_sync are gone.
    Job("mark", args={"token": "sync"}, connection=connection).enqueue()
    seen = run_all(redis_url, key_prefix, 6)
    assert seen == dict.fromkeys([*tokens, "sync"], 1)


def test_a_forked_child_enqueues_on_its_own_connections(
    app: Repid, redis_url: str, key_prefix: str
) -> None:
    connection = app.connection
    Job("mark", args={"token": "parent-before"}, connection=connection).enqueue()

    async def send_async(token: str) -> str:
        return await Job("mark", args={"token": token}, connection=connection).enqueue()

    asyncio.run(send_async("parent-async"))  # the parent also has a (closed) loop client
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 only if both of its enqueues were acknowledged
        code = 1
        try:
            Job("mark", args={"token": "child-sync"}, connection=connection).enqueue()
            asyncio.run(send_async("child-async"))
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child's enqueue hung")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    Job("mark", args={"token": "parent-after"}, connection=connection).enqueue()
    seen = run_all(redis_url, key_prefix, 5)
    expected = ["parent-before", "parent-async", "child-sync", "child-async", "parent-after"]
    assert seen == dict.fromkeys(expected, 1)


def test_sixteen_threads_share_one_job(app: Repid, redis_url: str, key_prefix: str) -> None:
    job = Job("mark", args={"token": "shared"}, connection=app.connection)
    ids: list[list[str]] = [[] for _ in range(16)]
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def send(mine: list[str]) -> None:
        try:
            start.wait()
            mine.extend(job.enqueue().value for _ in range(100))
        except BaseException as exc:
            errors.append(exc)
            raise

    threads = [threading.Thread(target=send, args=(ids[i],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    every = [i for mine in ids for i in mine]
    assert len(every) == 1600
    assert len(set(every)) == 1600
    assert run_all(redis_url, key_prefix, 1600) == {"shared": 1600}


def test_a_sync_caller_uses_no_event_loop_thread(app: Repid) -> None:
    before = {t.name for t in threading.enumerate()}
    Job("mark", args={"token": "x"}, connection=app.connection).enqueue()
    enqueue_many([mark("y"), mark("z")], app.connection)
    started = {t.name for t in threading.enumerate()} - before
    assert "repid-portal" not in started
    assert started == set()


def test_paused_redis_fails_within_the_deadline_then_works(key_prefix: str) -> None:
    server = RedisServer().start()
    assert server.process is not None
    broker = RedisMessageBroker(server.url, prefix=key_prefix, enqueue_timeout=1.0)
    connection = Connection(broker)
    try:
        Job("mark", args={"token": "before"}, connection=connection).enqueue()
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(ConnectionError, match=r"redis://127\.0\.0\.1:\d+/0.*within 1s"):
                Job("mark", args={"token": "sync"}, connection=connection).enqueue()
            sync_took = time.monotonic() - started

            async def send() -> str:
                return await Job("mark", args={"token": "a"}, connection=connection).enqueue()

            started = time.monotonic()
            with pytest.raises(ConnectionError, match="did not answer within 1s"):
                asyncio.run(send())
            async_took = time.monotonic() - started
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert sync_took < 1.5, sync_took
        assert async_took < 1.5, async_took
        # Once Redis answers again, the same calls work.
        Job("mark", args={"token": "after"}, connection=connection).enqueue()
        asyncio.run(send())
        with server.client() as client:
            stored = client.hlen(f"{key_prefix}:{{default}}:msgs")
        # "before", "after", "a" for sure; the paused calls may have been applied once each.
        assert 3 <= stored <= 5
    finally:
        connection.close()
        server.cleanup()


def test_password_is_redacted_in_the_deadline_error(key_prefix: str) -> None:
    server = RedisServer(password="s3cret-pw").start()
    assert server.process is not None
    url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
    connection = Connection(RedisMessageBroker(url, prefix=key_prefix, enqueue_timeout=0.5))
    try:
        Job("mark", connection=connection).enqueue()
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(ConnectionError) as caught:
                Job("mark", connection=connection).enqueue()
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert "s3cret-pw" not in str(caught.value)
        assert "redis://:***@127.0.0.1" in str(caught.value)
    finally:
        connection.close()
        server.cleanup()


def test_wrong_credentials_fail_at_once_with_what_to_fix(key_prefix: str) -> None:
    server = RedisServer(password="right-pw").start()
    url = f"redis://:wrong-pw@127.0.0.1:{server.port}/0"
    connection = Connection(RedisMessageBroker(url, prefix=key_prefix, enqueue_timeout=5.0))

    async def send() -> str:
        return await Job("mark", connection=connection).enqueue()

    try:
        for call in (
            lambda: Job("mark", connection=connection).enqueue(),
            lambda: asyncio.run(send()),
        ):
            started = time.monotonic()
            with pytest.raises(ConnectionError, match="refused the credentials") as caught:
                call()
            assert time.monotonic() - started < 2.0
            assert "wrong-pw" not in str(caught.value)
    finally:
        connection.close()
        server.cleanup()
