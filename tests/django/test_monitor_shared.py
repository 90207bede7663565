"""One snapshot per interval per process, shared by every open monitor socket (``monitor/hub.py``):
five sockets cost one computation per interval and get the same text; a user who may not watch
sees nothing of it; a new socket gets its first snapshot at once; a failed computation does not
stop the producer; the last socket to close stops the shared work."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import path

from repid_django import Connection
from repid_django.monitor import hub
from repid_django.monitor.consumers import FORBIDDEN, MonitorConsumer
from repid_django.monitor.routing import websocket_application
from repid_django.monitor.snapshot import Snapshot, build_snapshot

from .test_monitor import Headers, session_headers
from .test_monitor_access import closed_within, staff_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

INTERVAL = 0.4


async def eventually(probe: Callable[[], object], what: str, within: float = 10.0) -> None:
    """Return once ``probe()`` is truthy; ``AssertionError`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ``at`` of every snapshot the hubs build, in order."""
    real = build_snapshot
    built: list[str] = []

    def counting() -> Snapshot:
        snapshot = real()
        built.append(snapshot["at"])
        return snapshot

    monkeypatch.setattr(hub, "build_snapshot", counting)
    return built


@pytest.fixture
async def users(django_user_model: Any, aconnection: Connection) -> dict[str, Headers]:
    """Session headers of ``alice`` and ``bob`` (may watch) and ``eve`` (staff, no view)."""
    await aconnection.connect()

    @sync_to_async
    def log_in(name: str, view: bool) -> Headers:
        client = Client()
        client.force_login(staff_user(django_user_model, view=view, name=name))
        return session_headers(client)

    return {
        name: await log_in(name, view)
        for name, view in (("alice", True), ("bob", True), ("eve", False))
    }


def app(interval: float = INTERVAL, min_gap: float = 0.1) -> Any:
    consumer = MonitorConsumer.as_asgi(interval=interval, min_gap=min_gap)
    return websocket_application([path("ws/shared/", consumer)])


async def opened(application: Any, headers: Headers) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/shared/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


@pytest.fixture
async def sockets() -> AsyncIterator[list[WebsocketCommunicator]]:
    """Sockets a test opens; closed at the end even when it fails."""
    opened_sockets: list[WebsocketCommunicator] = []
    yield opened_sockets
    for communicator in opened_sockets:
        await communicator.disconnect()


async def received(communicator: WebsocketCommunicator) -> Snapshot:
    snapshot: Snapshot = await communicator.receive_json_from(timeout=10)
    assert snapshot["type"] == "snapshot"
    return snapshot


async def test_five_sockets_share_one_computation_per_interval(
    users: dict[str, Headers], builds: list[str], sockets: list[WebsocketCommunicator]
) -> None:
    application = app()
    for n in range(5):
        sockets.append(await opened(application, users["alice" if n % 2 else "bob"]))
    firsts = [await received(communicator) for communicator in sockets]
    (shared,) = hub.active_hubs()
    assert len(shared.subscriptions) == 5
    # From the first snapshot built after all five joined, every socket gets every one.
    newest = max(first["at"] for first in firsts)
    seen: list[list[str]] = []
    for communicator in sockets:
        snapshot = await received(communicator)
        while snapshot["at"] <= newest:
            snapshot = await received(communicator)
        ats = [snapshot["at"]]
        for _ in range(3):
            ats.append((await received(communicator))["at"])
        seen.append(ats)
    assert all(ats == seen[0] for ats in seen), seen
    window = builds[builds.index(seen[0][0]) : builds.index(seen[0][-1]) + 1]
    assert window == seen[0]  # no computation of its own for any socket: one per interval
    assert shared.computed == len(builds)
    times = [datetime.fromisoformat(at).timestamp() for at in seen[0]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= INTERVAL / 2 for gap in gaps), gaps  # about the period


async def test_a_user_who_may_not_watch_sees_nothing_of_the_shared_snapshot(
    users: dict[str, Headers],
    django_user_model: Any,
    sockets: list[WebsocketCommunicator],
) -> None:
    application = app()
    sockets.append(await opened(application, users["alice"]))
    sockets.append(await opened(application, users["bob"]))
    await received(sockets[0])
    await received(sockets[1])
    eve = WebsocketCommunicator(application, "/ws/shared/", headers=users["eve"])
    sockets.append(eve)
    connected, _ = await eve.connect(timeout=10)
    assert connected
    assert await eve.receive_output(timeout=10) == {"type": "websocket.close", "code": FORBIDDEN}
    assert await eve.receive_nothing(timeout=INTERVAL * 2)

    # bob loses the right: his socket closes, alice's goes on with the same producer
    bob = await django_user_model.objects.aget(username="bob")
    await sync_to_async(bob.user_permissions.clear)()
    assert await closed_within(sockets[1], 10) == FORBIDDEN
    (shared,) = hub.active_hubs()
    await eventually(lambda: len(shared.subscriptions) == 1, "bob's socket to leave the hub")
    for _ in range(2):
        await received(sockets[0])


async def test_a_new_socket_gets_its_first_snapshot_at_once(
    users: dict[str, Headers], builds: list[str], sockets: list[WebsocketCommunicator]
) -> None:
    application = app(interval=60.0, min_gap=0.2)  # no timer push within the test
    sockets.append(await opened(application, users["alice"]))
    first = await received(sockets[0])
    await asyncio.sleep(0.3)  # older than min_gap: the next socket asks for a fresh one
    started = time.monotonic()
    sockets.append(await opened(application, users["bob"]))
    sockets.append(await opened(application, users["alice"]))
    second, third = await received(sockets[1]), await received(sockets[2])
    assert time.monotonic() - started < 5.0  # not the 60 s of the interval
    assert second["at"] > first["at"]
    assert third["at"] == second["at"]  # joined while it was fresh: no computation of its own
    assert len(builds) == 2
    assert await sockets[0].receive_json_from(timeout=10) == second  # everyone got it


async def test_a_failed_computation_does_not_stop_the_producer(
    users: dict[str, Headers], monkeypatch: pytest.MonkeyPatch, sockets: list[WebsocketCommunicator]
) -> None:
    real, calls = build_snapshot, []

    def flaky() -> Snapshot:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return real()

    monkeypatch.setattr(hub, "build_snapshot", flaky)
    sockets.append(await opened(app(), users["alice"]))
    failed = await received(sockets[0])
    assert failed == hub.error_snapshot(RuntimeError("database went away"))
    assert failed["error"] == "RuntimeError: database went away"
    assert "queues" in await received(sockets[0])


async def test_closing_every_socket_stops_the_shared_work(users: dict[str, Headers]) -> None:
    application = app()
    communicators = [await opened(application, users["alice"]) for _ in range(3)]
    for communicator in communicators:
        await received(communicator)
    (shared,) = hub.active_hubs()
    task = shared.task
    assert task is not None
    await communicators[0].disconnect()
    assert not task.done()  # two sockets still watch
    for communicator in communicators[1:]:
        await communicator.disconnect()
    await eventually(task.done, "the producer to stop")
    assert hub.active_hubs() == []
    producers = [t for t in asyncio.all_tasks() if t.get_name() == "repid-monitor-snapshots"]
    assert producers == []
