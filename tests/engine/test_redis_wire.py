"""The lean RESP connections of the enqueue hot path, against real redis-servers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import AuthenticationError, ResponseError

from repid_django import Connection, Job, RedisMessageBroker
from repid_django.engine.brokers.redis.endpoint import Endpoint
from repid_django.engine.brokers.redis.url import RedisOptions
from repid_django.engine.brokers.redis.wire import AsyncWire, SyncWire

from ..redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def locked() -> Iterator[RedisServer]:
    """A server with a password and an ACL user, on a unix socket too."""
    server = RedisServer(password="pw", unix=True).start()
    with server.client() as client:
        client.acl_setuser(
            "app", enabled=True, passwords=["+apppw"], commands=["+@all"], keys=["*"]
        )
    yield server
    server.cleanup()


def endpoint(url: str) -> Endpoint:
    return Endpoint.of(RedisOptions(url))


def test_sync_auth_select_and_errors(redis_server: RedisServer) -> None:
    wire = SyncWire(endpoint(f"redis://127.0.0.1:{redis_server.port}/3"), timeout=2.0)
    assert wire.call("SET", "wire-key", "v") == b"OK"
    with redis.Redis(port=redis_server.port, db=3) as client:
        assert client.get("wire-key") == b"v"
        client.delete("wire-key")
    with pytest.raises(ResponseError, match="unknown command"):
        wire.call("NO-SUCH-COMMAND")
    assert wire.call("PING") == b"PONG"  # the connection is still in step after an error
    wire.close()


def test_password_user_and_unix_socket(locked: RedisServer) -> None:
    wire = SyncWire(endpoint(f"unix://:pw@{locked.socket}"), timeout=2.0)
    assert wire.call("PING") == b"PONG"
    wire = SyncWire(endpoint(f"unix://app:apppw@{locked.socket}?db=2"), timeout=2.0)
    assert wire.call("ACL", "WHOAMI") == b"app"
    with pytest.raises(AuthenticationError):
        SyncWire(endpoint(f"unix://:wrong@{locked.socket}"), timeout=2.0).call("PING")


async def test_async_pipelines_concurrent_callers_in_order(redis_server: RedisServer) -> None:
    wire = AsyncWire(endpoint(redis_server.url))
    replies = await asyncio.gather(*(wire.call("ECHO", str(i)) for i in range(200)))
    assert replies == [str(i).encode() for i in range(200)]
    await wire.aclose()


async def test_a_cancelled_call_never_hands_its_reply_to_the_next(
    redis_server: RedisServer,
) -> None:
    wire = AsyncWire(endpoint(redis_server.url))
    slow = asyncio.ensure_future(wire.call("BLPOP", "wire-never", 1))
    await asyncio.sleep(0.05)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert await wire.call("ECHO", "next") == b"next"
    await wire.aclose()


async def test_a_lost_connection_fails_pending_calls_then_reconnects(
    redis_server: RedisServer,
) -> None:
    wire = AsyncWire(endpoint(redis_server.url))
    await wire.call("CLIENT", "SETNAME", "wire-victim")
    pending = asyncio.ensure_future(wire.call("BLPOP", "wire-never", 5))
    await asyncio.sleep(0.05)
    with redis_server.client() as client:
        for info in client.client_list():
            if info["name"] == "wire-victim":
                client.client_kill_filter(_id=info["id"])
    with pytest.raises(redis.ConnectionError):
        await pending
    assert await wire.call("PING") == b"PONG"
    await wire.aclose()


def test_enqueue_reloads_its_script_after_script_flush(
    redis_server: RedisServer, key_prefix: str
) -> None:
    connection = Connection(RedisMessageBroker(redis_server.url, prefix=key_prefix))
    try:
        Job("a", connection=connection).enqueue()
        with redis_server.client() as client:
            client.script_flush()
        Job("a", connection=connection).enqueue()

        async def send() -> str:
            with redis_server.client() as client:
                client.script_flush()
            return await Job("a", connection=connection).enqueue()

        asyncio.run(send())
        with redis_server.client() as client:
            assert client.hlen(f"{key_prefix}:{{default}}:msgs") == 3
            client.delete(*client.keys(f"{key_prefix}:*"))
    finally:
        connection.close()


def test_each_thread_has_its_own_socket(redis_server: RedisServer) -> None:
    wire = SyncWire(endpoint(redis_server.url), timeout=2.0)
    ids: set[int] = set()

    def who() -> None:
        ids.add(int(wire.call("CLIENT", "ID")))
        ids.add(int(wire.call("CLIENT", "ID")))

    threads = [threading.Thread(target=who) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 4


def test_a_socket_the_server_closed_is_replaced_before_use(
    redis_server: RedisServer, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    connection = Connection(RedisMessageBroker(redis_server.url, prefix=key_prefix))
    try:
        Job("a", connection=connection).enqueue()
        Job("a", connection=connection).enqueue()
        with redis_server.client() as client:
            assert client.client_kill_filter(_type="normal", skipme=True) >= 1
        caplog.clear()
        Job("a", connection=connection).enqueue()
        assert not [r for r in caplog.records if "unreachable" in r.getMessage()]
        with redis_server.client() as client:
            assert client.hlen(f"{key_prefix}:{{default}}:msgs") == 3
            client.delete(*client.keys(f"{key_prefix}:*"))
    finally:
        connection.close()


def test_a_sync_call_is_bounded_by_its_deadline(redis_server: RedisServer) -> None:
    wire = SyncWire(endpoint(redis_server.url), timeout=10.0)
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        wire.call("BLPOP", "wire-never", 5, timeout=0.3)
    assert time.monotonic() - started < 2.0
    assert wire.call("PING") == b"PONG"  # a new socket: the late reply cannot answer this
