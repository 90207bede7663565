"""Who may watch the live monitor, checked again before every push: staff without the app's
view permission are refused (page and socket), logging out ends the stream, and a client
cannot make the server build snapshots back to back by asking for refreshes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import path, reverse

from repid_django import Connection
from repid_django.monitor.consumers import FORBIDDEN, MonitorConsumer
from repid_django.monitor.routing import websocket_application

from .test_monitor import WS_PATH, Headers, application, session_headers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def staff_user(django_user_model: Any, *, view: bool, name: str = "ops") -> Any:
    user = django_user_model.objects.create_user(name, password="pw", is_staff=True)
    if view:
        user.user_permissions.add(Permission.objects.get(codename="view_jobrecord"))
    return user


async def closed_within(communicator: WebsocketCommunicator, seconds: float) -> int:
    """The close code the server sends within ``seconds`` (snapshots before it are skipped)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        output: dict[str, Any] = await communicator.receive_output(timeout=left)
        if output["type"] == "websocket.close":
            return int(output["code"])
    raise AssertionError(f"the socket was not closed within {seconds}s")


def test_staff_without_the_view_permission_cannot_open_the_page(
    client: Client, django_user_model: Any
) -> None:
    client.force_login(staff_user(django_user_model, view=False))
    assert client.get(reverse("repid_monitor:monitor")).status_code == 403


async def test_staff_without_the_view_permission_are_refused_with_4403(
    client: Client, django_user_model: Any
) -> None:
    from asgiref.sync import sync_to_async

    @sync_to_async
    def log_in() -> Headers:
        client.force_login(staff_user(django_user_model, view=False))
        return session_headers(client)

    communicator = WebsocketCommunicator(application(), WS_PATH, headers=await log_in())
    try:
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        assert await closed_within(communicator, 10) == FORBIDDEN
    finally:
        await communicator.disconnect()


async def test_logging_out_ends_the_stream(
    client: Client, django_user_model: Any, aconnection: Connection
) -> None:
    from asgiref.sync import sync_to_async

    @sync_to_async
    def log_in() -> Headers:
        client.force_login(staff_user(django_user_model, view=True))
        return session_headers(client)

    await aconnection.connect()
    app = websocket_application([path("ws/fast/", MonitorConsumer.as_asgi(interval=0.1))])
    communicator = WebsocketCommunicator(app, "/ws/fast/", headers=await log_in())
    try:
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        for _ in range(2):  # logged in: snapshots keep coming
            snapshot = await communicator.receive_json_from(timeout=10)
            assert snapshot["type"] == "snapshot"
        await sync_to_async(client.logout)()  # another tab logs out: the session is flushed
        assert await closed_within(communicator, 10) == FORBIDDEN
    finally:
        await communicator.disconnect()


async def test_losing_the_permission_ends_the_stream(
    client: Client, django_user_model: Any, aconnection: Connection
) -> None:
    from asgiref.sync import sync_to_async

    user = await sync_to_async(staff_user)(django_user_model, view=True)

    @sync_to_async
    def log_in() -> Headers:
        client.force_login(user)
        return session_headers(client)

    await aconnection.connect()
    app = websocket_application([path("ws/fast/", MonitorConsumer.as_asgi(interval=0.1))])
    communicator = WebsocketCommunicator(app, "/ws/fast/", headers=await log_in())
    try:
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        assert (await communicator.receive_json_from(timeout=10))["type"] == "snapshot"
        await sync_to_async(user.user_permissions.clear)()
        assert await closed_within(communicator, 10) == FORBIDDEN
    finally:
        await communicator.disconnect()


async def test_refresh_requests_are_throttled(
    client: Client, django_user_model: Any, aconnection: Connection
) -> None:
    from asgiref.sync import sync_to_async

    @sync_to_async
    def log_in() -> Headers:
        client.force_login(staff_user(django_user_model, view=True))
        return session_headers(client)

    assert MonitorConsumer().min_gap > 0
    with pytest.raises(ValueError, match="min_gap"):
        MonitorConsumer(min_gap=-1)
    await aconnection.connect()
    consumer = MonitorConsumer.as_asgi(interval=60.0, min_gap=0.5)  # no timer push in the test
    app = websocket_application([path("ws/slow/", consumer)])
    communicator = WebsocketCommunicator(app, "/ws/slow/", headers=await log_in())
    try:
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        await communicator.receive_json_from(timeout=10)  # the first one, at once
        started = time.monotonic()
        arrivals: list[float] = []
        while time.monotonic() - started < 2.0:
            await communicator.send_json_to({"type": "refresh"})  # a client hammering
            # receive_nothing() peeks without cancelling the app (a receive timeout would)
            if not await communicator.receive_nothing(timeout=0.02, interval=0.005):
                await communicator.receive_json_from(timeout=1)
                arrivals.append(time.monotonic())
        gaps = [b - a for a, b in zip([started, *arrivals], arrivals, strict=False)]
        assert arrivals, "refreshes were never answered"
        assert len(arrivals) <= 5, f"{len(arrivals)} snapshots in 2 s: not throttled"
        assert all(gap >= 0.45 for gap in gaps[1:]), gaps
    finally:
        await communicator.disconnect()
