"""The fault-injection proxy itself (``tests/faultproxy.py``): what each fault does on the wire.

Raw sockets send the broker's own enqueue script through the proxy, so each test sees exactly
what a client sees (an answer, silence, part of a reply then a reset, an end of stream) and
what Redis applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import hiredis
import pytest
import redis

from repid_django.engine.brokers.base import Outcome, OutcomeKind
from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.brokers.redis.keys import queue_base, wake_key
from repid_django.engine.brokers.redis.scripts import script
from repid_django.engine.job import Job

from .faultproxy import FaultProxy, frame_end
from .redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(redis_server.port)
    yield proxy
    proxy.close()


def enqueue_request(prefix: str, job_id: str) -> bytes:
    """The broker's one-message enqueue, as the lean connection sends it."""
    enqueue = script("enqueue")
    base = queue_base(prefix, "q")
    command: tuple[Any, ...] = ("EVALSHA", enqueue.sha, 1, base, 0, job_id, 0, "{}")
    return bytes(hiredis.pack_command(command))


def connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2.0)
    sock.settimeout(2.0)
    return sock


def read_all(sock: socket.socket) -> tuple[bytes, str]:
    """Everything until the peer ends the stream: (bytes, how it ended)."""
    got = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return got, "reset"
        except TimeoutError:
            return got, "silence"
        if not data:
            return got, "closed"
        got += data


@pytest.fixture
def loaded(redis_client: redis.Redis) -> redis.Redis:
    redis_client.script_load(script("enqueue").source)
    return redis_client


def test_frames_and_operations(proxy: FaultProxy, key_prefix: str) -> None:
    assert frame_end(b"+OK\r\n") == 5
    assert frame_end(b"$3\r\nab") == -1
    assert frame_end(b"*2\r\n$1\r\na\r\n:1\r\n+x") == 15
    assert frame_end(b"*-1\r\n$-1\r\n") == 5
    assert frame_end(b"*2\r\n*1\r\n$1\r\na\r\n") == -1
    for name in ("enqueue", "claim", "finish", "extend"):
        assert proxy.classify([b"EVALSHA", script(name).sha.encode(), b"1", b"k"]) == name
        assert proxy.classify([b"evalsha", script(name).sha.upper().encode()]) == name
    assert proxy.classify([b"EVAL", script("claim").source.encode(), b"0"]) == "claim"
    assert proxy.classify([b"EVALSHA", script("reap").sha.encode(), b"0"]) == "other"
    wake = wake_key(key_prefix, "q").encode()
    assert proxy.classify([b"BLPOP", wake, b"0.5"]) == "idle"
    assert proxy.classify([b"BLPOP", b"list", b"0.5"]) == "other"
    assert proxy.classify([b"PING"]) == "other"
    # A script changed on disk after the proxy started is named once its source is seen.
    changed = b"-- changed\n" + script("claim").source.encode()
    sha = hashlib.sha1(changed, usedforsecurity=False).hexdigest().encode()
    assert proxy.classify([b"EVALSHA", sha, b"0"]) == "other"
    assert proxy.unknown_scripts() == 1
    assert proxy.classify([b"SCRIPT", b"LOAD", changed]) == "other"
    assert proxy.classify([b"EVALSHA", sha, b"0"]) == "claim"
    assert proxy.classify([b"EVAL", b"-- another\n" + changed, b"0"]) == "claim"


def test_requests_pass_and_are_counted(
    proxy: FaultProxy, redis_client: redis.Redis, key_prefix: str
) -> None:
    async def roundtrip() -> None:
        broker = RedisMessageBroker(proxy.url, prefix=key_prefix, lease_ttl=5, reaper_interval=0.2)
        await broker.connect()
        try:
            assert await broker.enqueue([Job("a", queue="q", id_="j1").to_message()]) == [True]
            (delivery,) = await broker.claim(["q"], 10, 0.0)
            assert await broker.claim(["q"], 10, 0.3) == []  # waits: a BLPOP on the wake key
            assert await broker.finish([Outcome(delivery, OutcomeKind.ACK)]) == [True]
        finally:
            await broker.disconnect()

    asyncio.run(roundtrip())
    counts = proxy.counters()
    assert counts["enqueue"] >= 1  # twice when the script had to be loaded first
    assert counts["claim"] >= 2
    assert counts["finish"] >= 1
    assert counts["idle"] >= 1
    assert not any("/" in name for name in counts)  # nothing faulted
    assert redis_client.hlen(queue_base(key_prefix, "q") + "msgs") == 0


def test_delay_holds_each_request_of_the_operation(
    proxy: FaultProxy, loaded: redis.Redis, key_prefix: str
) -> None:
    fault = proxy.inject("delay", "enqueue", count=1, delay=0.3)
    with connect(proxy) as sock:
        started = time.monotonic()
        sock.sendall(b"*1\r\n$4\r\nPING\r\n" + enqueue_request(key_prefix, "j1"))
        got = b""
        while got.count(b"\r\n") < 3:
            got += sock.recv(65536)
        held = time.monotonic() - started
        assert got == b"+PONG\r\n$1\r\n1\r\n"
        started = time.monotonic()
        sock.sendall(enqueue_request(key_prefix, "j2"))
        assert sock.recv(65536) == b"$1\r\n1\r\n"
        fast = time.monotonic() - started
    assert held >= 0.3
    assert fast < 0.2
    assert (fault.hits, proxy.faulted("enqueue", "delay"), fault.done) == (1, 1, True)


def test_blackhole_silences_the_connection_for_good(
    proxy: FaultProxy, loaded: redis.Redis, key_prefix: str
) -> None:
    fault = proxy.inject("blackhole", "enqueue", duration=0.6)
    with connect(proxy) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert sock.recv(100) == b"+PONG\r\n"  # other requests go through
        sock.settimeout(1.0)
        sock.sendall(enqueue_request(key_prefix, "j1") + b"*1\r\n$4\r\nPING\r\n")
        assert read_all(sock) == (b"", "silence")
        assert time.monotonic() > fault.start + 0.6  # the fault is over: still silent
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert read_all(sock) == (b"", "silence")
        with connect(proxy) as fresh:  # a new connection works
            fresh.sendall(enqueue_request(key_prefix, "j2"))
            assert fresh.recv(100) == b"$1\r\n1\r\n"
    msgs = loaded.hkeys(queue_base(key_prefix, "q") + "msgs")
    assert msgs == [b"j2"]  # the black-holed request never reached Redis
    assert (fault.hits, proxy.faulted("enqueue", "blackhole")) == (1, 1)


def test_reset_forwards_part_of_the_reply_then_resets(
    proxy: FaultProxy, loaded: redis.Redis, key_prefix: str
) -> None:
    fault = proxy.inject("reset", "enqueue", count=1)
    with connect(proxy) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n" + enqueue_request(key_prefix, "j1"))
        assert read_all(sock) == (b"+PONG\r\n$1\r", "reset")
    assert loaded.hkeys(queue_base(key_prefix, "q") + "msgs") == [b"j1"]  # applied
    assert (fault.hits, fault.done, proxy.faulted("enqueue", "reset")) == (1, True, 1)
    assert fault.end is not None
    with connect(proxy) as sock:  # the fault is spent
        sock.sendall(enqueue_request(key_prefix, "j2"))
        assert sock.recv(100) == b"$1\r\n1\r\n"


def test_drop_swallows_the_reply_of_an_applied_request_and_closes(
    proxy: FaultProxy, loaded: redis.Redis, key_prefix: str
) -> None:
    fault = proxy.inject("drop", "enqueue", count=2)
    with connect(proxy) as one, connect(proxy) as two:
        one.sendall(b"*1\r\n$4\r\nPING\r\n" + enqueue_request(key_prefix, "j1"))
        assert read_all(one) == (b"+PONG\r\n", "closed")
        two.sendall(enqueue_request(key_prefix, "j2"))
        assert read_all(two) == (b"", "closed")
    assert sorted(loaded.hkeys(queue_base(key_prefix, "q") + "msgs")) == [b"j1", b"j2"]
    assert (fault.hits, fault.done, proxy.faulted("enqueue", "drop")) == (2, True, 2)


def test_a_reply_fault_takes_only_the_replies_it_is_for(
    proxy: FaultProxy, loaded: redis.Redis, key_prefix: str
) -> None:
    fault = proxy.inject("reset", "enqueue", count=1, when=lambda reply: reply == b"1")
    with connect(proxy) as sock:
        loaded.hset(queue_base(key_prefix, "q") + "msgs", "j1", "{}")
        sock.sendall(enqueue_request(key_prefix, "j1"))  # already there: '0', not taken
        assert sock.recv(100) == b"$1\r\n0\r\n"
        assert (fault.hits, fault.marked) == (0, 0)
        sock.sendall(enqueue_request(key_prefix, "j2"))  # written: '1', reset
        assert read_all(sock) == (b"$1\r", "reset")
    assert (fault.hits, proxy.faulted("enqueue", "reset")) == (1, 1)
