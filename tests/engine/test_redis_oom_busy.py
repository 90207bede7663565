"""A Redis that is full (``maxmemory`` with ``noeviction``) or busy (a long script): real servers.

A producer gets a clear error at once when Redis is out of memory (a web request should not wait
for memory), and its enqueue works again once memory is freed. ``BUSY`` is transient: an
enqueue retries until the long script ends, within its deadline.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from repid_django import Connection, Job, RedisMessageBroker

from ..redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def small_redis() -> Iterator[RedisServer]:
    server = RedisServer(extra=["--maxmemory-policy", "noeviction"]).start()
    yield server
    server.cleanup()


def test_a_full_redis_refuses_an_enqueue_at_once_then_takes_it(
    small_redis: RedisServer, key_prefix: str
) -> None:
    connection = Connection(RedisMessageBroker(small_redis.url, prefix=key_prefix))

    async def send() -> str:
        return await Job("a", connection=connection).enqueue()

    try:
        Job("a", connection=connection).enqueue()  # the queue exists: the lean path from now on
        with small_redis.client() as client:
            client.set("ballast", b"x" * 3_000_000)
            client.config_set("maxmemory", "1mb")  # now well over it: writes are refused
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                client.set("probe", "1")
            for call in (
                lambda: Job("a", connection=connection).enqueue(),
                lambda: asyncio.run(send()),
            ):
                started = time.monotonic()
                with pytest.raises(ConnectionError, match=r"out of memory.*maxmemory"):
                    call()
                assert time.monotonic() - started < 1.0  # not retried until the deadline
            client.config_set("maxmemory", "64mb")  # memory back
            Job("a", connection=connection).enqueue()
            asyncio.run(send())
            assert client.hlen(f"{key_prefix}:{{default}}:msgs") == 3
    finally:
        connection.close()


def test_busy_is_waited_out_within_the_deadline(redis_server: RedisServer, key_prefix: str) -> None:
    connection = Connection(
        RedisMessageBroker(redis_server.url, prefix=key_prefix, enqueue_timeout=5.0)
    )
    admin = redis_server.client()
    busy = redis_server.client()
    try:
        Job("a", connection=connection).enqueue()
        admin.config_set("lua-time-limit", 50)

        def block() -> None:
            with pytest.raises(redis.ResponseError):  # ended by SCRIPT KILL
                busy.eval("while true do end", 0)

        blocker = threading.Thread(target=block, daemon=True)
        blocker.start()
        time.sleep(0.3)  # past lua-time-limit: other clients now get BUSY
        with pytest.raises(redis.ResponseError, match="BUSY"):
            admin.ping()
        threading.Timer(0.5, admin.script_kill).start()
        started = time.monotonic()
        Job("a", connection=connection).enqueue()  # BUSY, retried, then written
        assert 0.3 < time.monotonic() - started < 4.0
        blocker.join(5)
        assert admin.hlen(f"{key_prefix}:{{default}}:msgs") == 2
        admin.delete(f"{key_prefix}:{{default}}:msgs")
    finally:
        admin.config_set("lua-time-limit", 5000)
        connection.close()
        admin.close()
        busy.close()
