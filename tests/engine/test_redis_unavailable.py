"""A worker facing a Redis that answers but cannot serve: BUSY, LOADING, READONLY and OOM,
each provoked for real on a redis-server of its own.

In every case the worker pauses (its calls are retried with back-off; it does not stop), then
resumes by itself once Redis serves again, and every job runs exactly once: no job is
dead-lettered, none is lost, none runs twice. A producer meanwhile gets either its job in or a
clear error naming the cause (never a silent loss).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from repid_django import Connection, Job, RedisMessageBroker, Repid, Router, Worker

from ..redis_server import RedisServer
from ._helpers import Running, until

pytestmark = [pytest.mark.redis, pytest.mark.slow]
JOBS = 60


@pytest.fixture
def servers() -> Iterator[list[RedisServer]]:
    made: list[RedisServer] = []
    yield made
    for server in made:
        server.cleanup()


def broker(url: str, prefix: str) -> RedisMessageBroker:
    return RedisMessageBroker(
        url,
        prefix=prefix,
        lease_ttl=3.0,
        reaper_interval=0.5,
        socket_timeout=1.0,
        max_backoff=0.2,
        enqueue_timeout=1.0,
    )


async def run_through(
    url: str, prefix: str, fault: Callable[[], None], *, jobs_during: bool = True
) -> tuple[list[str], Any]:
    """Enqueue JOBS jobs, start a worker, apply ``fault`` (blocking, in a thread) once the
    worker is busy, and wait until every job ran; returns the runs and the runner."""
    runs: list[str] = []
    router = Router()

    @router.actor(name="step")
    async def step(n: int) -> None:
        runs.append(f"job {n}")
        await asyncio.sleep(0.02)

    connection = Connection(broker(url, prefix))
    for n in range(JOBS):
        await Job("step", args={"n": n}, connection=connection).enqueue()
    await connection.disconnect()
    app = Repid(Connection(broker(url, prefix)))
    async with app.magic(auto_disconnect=True):
        worker = Worker(routers=[router], handle_signals=[], concurrency=2)
        running = Running(worker)
        await running.started()
        await until(lambda: len(runs) >= 4, what="the worker is busy")
        await asyncio.to_thread(fault)
        await until(lambda: len(runs) >= JOBS, within=30.0, what="every job ran after the fault")
        await until(
            lambda: worker.runner is not None and worker.runner.succeeded == JOBS,
            within=15.0,
            what="every outcome was recorded",
        )
        assert not running.task.done(), "the worker stopped"
        runner = await running.stop()
    return runs, runner


def raw_ping(port: int) -> str:
    """PING on a fresh socket, no client library (redis-py waits out LOADING by itself)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(200).decode().split("\r\n")[0]
    except OSError as exc:
        return f"unreachable: {exc}"


def assert_each_ran_once(runs: list[str], runner: Any, client: redis.Redis, prefix: str) -> None:
    assert sorted(runs) == sorted(f"job {n}" for n in range(JOBS))
    assert runner.counters.lease_lost == 0
    assert runner.counters.dead == 0
    for part in ("ready", "delayed", "leases", "dead"):
        assert client.zcard(f"{prefix}:{{default}}:{part}") == 0, part


async def test_busy_a_long_script_pauses_the_worker(
    servers: list[RedisServer], key_prefix: str
) -> None:
    server = RedisServer(extra=["--busy-reply-threshold", "100"]).start()
    servers.append(server)
    busy_script = (
        "local t = redis.call('TIME') local stop = t[1] * 1e6 + t[2] + 1500000 "
        "while true do t = redis.call('TIME') if t[1] * 1e6 + t[2] > stop then break end end "
        "return 1"
    )
    seen: list[str] = []

    def fault() -> None:
        with server.client() as client:
            done = threading.Event()

            def long_script() -> None:
                with server.client() as other:
                    other.eval(busy_script, 0)
                done.set()

            threading.Thread(target=long_script).start()
            while not done.is_set():  # the server answers BUSY to everyone meanwhile
                try:
                    client.ping()
                except redis.exceptions.ResponseError as exc:
                    seen.append(str(exc).split()[0])
                time.sleep(0.05)

    runs, runner = await run_through(server.url, key_prefix, fault)
    assert "BUSY" in seen  # the fault really happened
    with server.client() as client:
        assert_each_ran_once(runs, runner, client, key_prefix)


async def test_oom_a_full_redis_pauses_the_worker(
    servers: list[RedisServer], key_prefix: str
) -> None:
    server = RedisServer(extra=["--maxmemory-policy", "noeviction"]).start()
    servers.append(server)
    refused: list[str] = []

    def fault() -> None:
        with server.client() as client:
            client.set("ballast", b"x" * 3_000_000)
            client.config_set("maxmemory", "1mb")
            connection = Connection(broker(server.url, key_prefix))
            try:  # a producer meanwhile: a clear error at once, nothing written
                Job("step", args={"n": -1}, connection=connection).enqueue()
            except ConnectionError as exc:
                refused.append(str(exc))
            finally:
                connection.close()
            time.sleep(1.5)
            client.delete("ballast")
            client.config_set("maxmemory", "0")

    runs, runner = await run_through(server.url, key_prefix, fault)
    assert len(refused) == 1
    assert "maxmemory" in refused[0]
    with server.client() as client:
        assert_each_ran_once(runs, runner, client, key_prefix)


async def test_readonly_a_demoted_primary_pauses_the_worker(
    servers: list[RedisServer], key_prefix: str
) -> None:
    primary = RedisServer().start()
    servers.append(primary)
    replica = RedisServer(extra=["--replicaof", "127.0.0.1", str(primary.port)]).start()
    servers.append(replica)
    refused: list[str] = []

    def synced(server: RedisServer) -> bool:
        with server.client() as c:
            info = c.info("replication")
            return bool(info.get("master_link_status") == "up")

    def fault() -> None:
        # A failover in the wrong direction for this worker: the replica is promoted and the
        # primary it talks to becomes a (read-only) replica of it, until it is promoted back.
        with primary.client() as p, replica.client() as r:
            deadline = time.monotonic() + 10
            while not synced(replica):
                assert time.monotonic() < deadline, "the replica did not sync"
                time.sleep(0.02)
            r.execute_command("REPLICAOF", "NO", "ONE")
            p.execute_command("REPLICAOF", "127.0.0.1", str(replica.port))
            deadline = time.monotonic() + 10
            while not synced(primary):
                assert time.monotonic() < deadline, "the demoted primary did not sync"
                time.sleep(0.02)
            connection = Connection(broker(primary.url, key_prefix))
            try:
                Job("step", args={"n": -1}, connection=connection).enqueue()
            except ConnectionError as exc:
                refused.append(str(exc))
            finally:
                connection.close()
            time.sleep(1.0)
            p.execute_command("REPLICAOF", "NO", "ONE")

    runs, runner = await run_through(primary.url, key_prefix, fault)
    assert len(refused) == 1
    assert "read only replica" in refused[0]
    with primary.client() as client:
        assert_each_ran_once(runs, runner, client, key_prefix)


async def test_loading_a_restarting_redis_pauses_the_worker(
    servers: list[RedisServer], key_prefix: str
) -> None:
    # 200 µs per key loaded, and clients answered (LOADING) every KiB loaded
    extra = ["--key-load-delay", "200", "--loading-process-events-interval-bytes", "1024"]
    server = RedisServer(extra=extra).start()
    servers.append(server)
    loading_seen: list[float] = []
    refused: list[str] = []
    runs: list[str] = []
    router = Router()

    @router.actor(name="step")
    async def step(n: int) -> None:
        runs.append(f"job {n}")

    def enqueue(numbers: range) -> None:
        connection = Connection(broker(server.url, key_prefix))
        try:
            for n in numbers:
                Job("step", args={"n": n}, connection=connection).enqueue()
        finally:
            connection.close()

    def restart() -> None:
        with server.client() as client:
            with client.pipeline(transaction=False) as pipe:
                for i in range(8000):  # ~1.6 s of loading at 200 µs per key
                    pipe.set(f"ballast:{i}", "x")
                pipe.execute()
            client.save()
        server.kill()  # a crash; the restart loads the snapshot
        assert server.process is not None
        args = [str(a) for a in server.process.args]  # type: ignore[union-attr]
        server.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while (answer := raw_ping(server.port)) != "+PONG":
            if answer.startswith("-LOADING"):
                if not loading_seen:  # a producer now: LOADING is retried until its deadline
                    try:
                        enqueue(range(-1, 0))
                    except ConnectionError as exc:
                        refused.append(str(exc))
                loading_seen.append(time.monotonic())
            assert time.monotonic() < deadline, "redis-server did not come back"
            time.sleep(0.05)

    app = Repid(Connection(broker(server.url, key_prefix)))
    async with app.magic(auto_disconnect=True):
        worker = Worker(routers=[router], handle_signals=[], concurrency=2)
        running = Running(worker)
        await running.started()
        await asyncio.to_thread(enqueue, range(JOBS // 2))
        await until(
            lambda: worker.runner is not None and worker.runner.succeeded == JOBS // 2,
            what="the first half ran and was recorded",
        )
        await asyncio.to_thread(restart)  # the worker waits for jobs meanwhile
        await asyncio.to_thread(enqueue, range(JOBS // 2, JOBS))
        await until(
            lambda: worker.runner is not None and worker.runner.succeeded == JOBS,
            within=20.0,
            what="the second half ran after the restart",
        )
        assert not running.task.done(), "the worker stopped"
        runner = await running.stop()
    assert loading_seen  # it really answered LOADING for a while
    assert len(refused) == 1
    assert "loading" in refused[0].lower()
    with server.client() as client:
        assert_each_ran_once(runs, runner, client, key_prefix)
