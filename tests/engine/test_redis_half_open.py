"""A worker waiting for jobs on a connection whose peer vanished (half-open TCP) notices it.

The proxy in front of Redis black-holes every open connection while the worker is idle in its
blocking read; a job enqueued then (straight to Redis) must still run, within the blocking
read's timeout plus a reconnection, not never.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from repid_django import Connection, Job, RedisMessageBroker, Repid, Router, Worker

from ..blackhole import BlackholeProxy
from ..redis_server import RedisServer
from ._helpers import Running, until

pytestmark = pytest.mark.redis


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[BlackholeProxy]:
    proxy = BlackholeProxy(redis_server.port)
    yield proxy
    proxy.close()


async def test_an_idle_worker_survives_a_vanished_connection(
    proxy: BlackholeProxy, redis_url: str, key_prefix: str
) -> None:
    ran: list[float] = []
    router = Router()

    @router.actor(name="ping")
    async def ping() -> None:
        ran.append(time.monotonic())

    broker = RedisMessageBroker(
        proxy.url, prefix=key_prefix, socket_timeout=1.0, reaper_interval=0.5, lease_ttl=3.0
    )
    app = Repid(Connection(broker))
    async with app.magic(auto_disconnect=True):
        worker = Worker(routers=[router], handle_signals=[], claim_wait=5.0)
        running = Running(worker)
        await running.started()
        await Job("ping").enqueue()
        await until(lambda: len(ran) == 1, what="the first job ran")
        await asyncio.sleep(0.3)  # idle now, in its blocking read
        assert proxy.freeze() >= 2
        direct = Connection(RedisMessageBroker(redis_url, prefix=key_prefix))
        frozen_at = time.monotonic()
        await Job("ping", connection=direct).enqueue()
        # socket_timeout (1 s) + reaper_interval (0.5 s) for the blocking read, then reconnect.
        await until(lambda: len(ran) == 2, within=8.0, what="the job after the partition ran")
        await direct.disconnect()
        await running.stop()
    assert ran[1] - frozen_at < 8.0
