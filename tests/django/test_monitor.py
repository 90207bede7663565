"""The live monitor against a real Redis: the WebSocket consumer through the project's real ASGI
app (session login, Origin check), the snapshot it pushes, and the staff-only page."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from repid_django import Connection, Job, Queue
from repid_django.models import QueueRecord
from repid_django.monitor.consumers import FORBIDDEN
from repid_django.monitor.snapshot import Snapshot, build_snapshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

Headers = list[tuple[bytes, bytes]]
WS_PATH = "/ws/repid/monitor/"
ORIGIN = (b"origin", b"http://testserver")


def application() -> Any:
    from example_project.asgi import application as app

    return app


def session_headers(client: Client) -> Headers:
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    return [ORIGIN, (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode())]


def login(client: Client, django_user_model: Any, *, staff: bool) -> Headers:
    user = django_user_model.objects.create_user(
        "staff" if staff else "customer", password="pw", is_staff=staff
    )
    if staff:  # the monitor needs the app's view permission besides is_staff
        user.user_permissions.add(Permission.objects.get(codename="view_jobrecord"))
    client.force_login(user)
    return session_headers(client)


@pytest.fixture
def staff(client: Client, django_user_model: Any) -> Headers:
    return login(client, django_user_model, staff=True)


async def open_socket(headers: Headers) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application(), WS_PATH, headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


@pytest.fixture
async def socket(staff: Headers, aconnection: Connection) -> AsyncIterator[WebsocketCommunicator]:
    await aconnection.connect()
    communicator = await open_socket(staff)
    try:
        yield communicator
    finally:
        await communicator.disconnect()


async def next_snapshot(
    communicator: WebsocketCommunicator,
    condition: Callable[[Snapshot], bool] = lambda snapshot: True,
    within: float = 15.0,
) -> Snapshot:
    """The first pushed snapshot that meets ``condition``, within ``within`` seconds."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        snapshot: Snapshot = await communicator.receive_json_from(timeout=left)
        assert snapshot["type"] == "snapshot"
        if condition(snapshot):
            return snapshot
    raise AssertionError("no snapshot met the condition within the deadline")


def queue_row(snapshot: Snapshot, name: str) -> dict[str, Any] | None:
    return next((row for row in snapshot["queues"] if row["name"] == name), None)


async def test_staff_gets_the_live_depths_of_redis_at_once(
    staff: Headers, aconnection: Connection
) -> None:
    await Queue("mail").declare()
    for n in range(3):
        await Job("noop", queue="mail", args={"n": n}).enqueue()
    for n in range(2):
        await Job("noop", queue="mail", args={"n": n}, deferred_by=3600).enqueue()
    expected = await Queue("mail").stats()
    assert (expected.ready, expected.delayed) == (3, 2)

    communicator = await open_socket(staff)
    try:
        snapshot = await communicator.receive_json_from(timeout=10)  # the first one, at once
    finally:
        await communicator.disconnect()
    row = queue_row(snapshot, "mail")
    assert row is not None
    assert (row["ready"], row["delayed"], row["running"], row["dead"]) == (3, 2, 0, 0)
    assert row["live"] is True
    assert snapshot["stale"] is False
    assert snapshot["error"] is None
    assert snapshot["totals"]["ready"] >= 3
    assert set(snapshot) >= {"throughput", "workers", "failures", "broker", "at"}


async def test_a_new_snapshot_is_pushed_when_jobs_change(socket: WebsocketCommunicator) -> None:
    await Queue("default").declare()
    first = await next_snapshot(socket)
    before = queue_row(first, "default")
    ready = 0 if before is None else before["ready"]

    await Job("noop").enqueue()
    await Job("noop").enqueue()

    def grew(snapshot: Snapshot) -> bool:
        row = queue_row(snapshot, "default")
        return row is not None and row["ready"] == ready + 2

    # Pushed by the timer: the client asks for nothing.
    assert await next_snapshot(socket, grew)


async def test_a_refresh_message_asks_for_a_snapshot_now(socket: WebsocketCommunicator) -> None:
    await next_snapshot(socket)
    await Queue("urgent").declare()
    await socket.send_json_to({"type": "refresh"})
    snapshot = await next_snapshot(socket, lambda s: queue_row(s, "urgent") is not None, 5.0)
    assert queue_row(snapshot, "urgent") == {
        "name": "urgent",
        "ready": 0,
        "delayed": 0,
        "running": 0,
        "dead": 0,
        "live": True,
        "mirrored_at": None,
        "paused": False,
        "limits": {"queue": None, "actors": {}},
    }


async def test_the_period_is_set_where_the_route_is_declared(
    staff: Headers, aconnection: Connection
) -> None:
    from django.urls import path

    from repid_django.monitor.consumers import MonitorConsumer
    from repid_django.monitor.routing import websocket_application

    assert MonitorConsumer(interval=0.25).interval == 0.25
    with pytest.raises(ValueError, match="positive"):
        MonitorConsumer(interval=0)
    app = websocket_application([path("ws/fast/", MonitorConsumer.as_asgi(interval=0.05))])
    await aconnection.connect()
    communicator = WebsocketCommunicator(app, "/ws/fast/", headers=staff)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    try:
        for _ in range(3):  # each within 0.8 s: the default 1 s period would not do
            await communicator.receive_json_from(timeout=0.8)
    finally:
        await communicator.disconnect()


async def refused(headers: Headers) -> dict[str, Any]:
    communicator = WebsocketCommunicator(application(), WS_PATH, headers=headers)
    try:
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        closing: dict[str, Any] = await communicator.receive_output(timeout=10)
        assert await communicator.receive_nothing(timeout=0.3)
        return closing
    finally:
        await communicator.disconnect()


async def test_anonymous_users_are_refused_with_4403() -> None:
    assert await refused([ORIGIN]) == {"type": "websocket.close", "code": FORBIDDEN}


async def test_non_staff_users_are_refused_with_4403(non_staff: Headers) -> None:
    assert await refused(non_staff) == {"type": "websocket.close", "code": FORBIDDEN}


@pytest.fixture
def non_staff(client: Client, django_user_model: Any) -> Headers:
    return login(client, django_user_model, staff=False)


async def test_another_sites_origin_cannot_open_the_socket(staff: Headers) -> None:
    cookie = [header for header in staff if header[0] == b"cookie"]
    communicator = WebsocketCommunicator(
        application(), WS_PATH, headers=[(b"origin", b"https://evil.example"), *cookie]
    )
    connected, _ = await communicator.connect(timeout=10)
    assert not connected
    await communicator.disconnect()


async def test_an_unreachable_broker_gives_a_stale_snapshot_not_a_crash(
    staff: Headers, settings: Any
) -> None:
    from tests.redis_server import free_port

    await QueueRecord.objects.acreate(name="mail", ready=7, dead=2)
    settings.REPID = {**settings.REPID, "BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    communicator = WebsocketCommunicator(application(), WS_PATH, headers=staff)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    try:
        for _ in range(2):  # it keeps pushing
            snapshot = await next_snapshot(communicator)
            assert snapshot["stale"] is True
            assert "Connection" in snapshot["error"]
            row = queue_row(snapshot, "mail")
            assert row is not None
            assert (row["ready"], row["dead"], row["live"]) == (7, 2, False)
            assert row["mirrored_at"]
    finally:
        await communicator.disconnect()


def test_snapshot_reports_throughput_workers_and_failures(
    run_worker: Callable[..., str],
) -> None:
    for _ in range(3):
        Job("noop").enqueue()
    job_id = Job("flaky", args={"tag": "m", "fail_times": 1}).enqueue().value
    run_worker()

    snapshot = build_snapshot()
    assert snapshot["throughput"]["finished"] >= 4
    assert snapshot["throughput"]["succeeded"] >= 3
    assert snapshot["throughput"]["per_second"] == pytest.approx(
        snapshot["throughput"]["finished"] / 60, abs=1e-3
    )
    assert [f["job_id"] for f in snapshot["failures"]] == [job_id]
    assert snapshot["failures"][0]["kind"] == "dead"
    assert snapshot["failures"][0]["actor"] == "flaky"
    workers = snapshot["workers"]
    assert len(workers["items"]) == 1
    assert workers["alive"] + workers["dead"] == 1
    assert workers["items"][0]["processed"] >= 4
    assert workers["items"][0]["heartbeat_age"] >= 0


def test_the_page_needs_a_staff_login(client: Client, django_user_model: Any) -> None:
    url = reverse("repid_monitor:monitor")
    answer = client.get(url)
    assert answer.status_code == 302
    assert answer["Location"].startswith(reverse("admin:login"))

    login(client, django_user_model, staff=False)
    assert client.get(url).status_code == 302


def test_staff_sees_the_page_with_the_socket_url_linked_from_the_dashboard(
    client: Client, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="repid_django", codename__startswith="view_"
        )
    )
    client.force_login(user)
    url = reverse("repid_monitor:monitor")
    html = client.get(url).content.decode()
    assert 'data-ws-path="/ws/repid/monitor/"' in html
    assert "repid_django/monitor.js" in html
    assert 'id="repid-queues"' in html
    dashboard = client.get(reverse("admin:app_list", args=("repid_django",)))
    assert f'href="{url}"' in dashboard.content.decode()
