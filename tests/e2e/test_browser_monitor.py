"""A real headless Chromium watches the live monitor update over its WebSocket.

The project's ASGI app runs under Daphne in a child process (on the test database and the test's
Redis keys); static files are answered from the app's static folder by the browser's router,
since a bare ASGI server does not serve them. Skipped without ``/usr/bin/chromium`` unless
``REPID_TEST_REQUIRE_CHROMIUM=1``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.staticfiles import finders
from django.db import connection

from repid_django import Job, Queue, conf

from ..redis_server import free_port
from .test_browser_admin import chromium, off_loop  # noqa: F401 - the fixture is used

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def wait_for_port(port: int, server: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"daphne exited with code {server.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"daphne did not listen on port {port} within {timeout:.0f}s")


@pytest.fixture
def on_test_redis(settings: Any, redis_url: str, key_prefix: str) -> Iterator[None]:
    settings.REPID = {**settings.REPID, "BROKER_URL": redis_url, "PREFIX": key_prefix}
    yield
    conf.reset()


@pytest.fixture
def asgi_server(redis_url: str, key_prefix: str, redis_client: Any) -> Iterator[str]:
    """``example_project.asgi`` under Daphne with the test settings, database and Redis keys."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django.settings",
        "REPID_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
        "REPID_BROKER_URL": redis_url,
        "REPID_PREFIX": key_prefix,
    }
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(
        [*command, "example_project.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def serve_static(route: Any) -> None:
    name = route.request.url.split("/static/", 1)[1].split("?", 1)[0]
    found = finders.find(name)
    if isinstance(found, str):
        route.fulfill(path=found)
    else:
        route.fulfill(status=404, body="not found")


def test_the_monitor_page_shows_live_queue_depths(
    chromium: Path,  # noqa: F811 - the fixture imported above
    asgi_server: str,
    on_test_redis: None,
    django_user_model: Any,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    ops_user = django_user_model.objects.create_user("ops", password="ops-pw", is_staff=True)
    ops_user.user_permissions.add(Permission.objects.get(codename="view_jobrecord"))
    Queue("default").declare()
    for _ in range(2):
        Job("noop").enqueue()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.route("**/static/**", serve_static)
            page.goto(f"{asgi_server}/admin/repid_django/monitor/")
            page.fill("#id_username", "ops")
            page.fill("#id_password", "ops-pw")
            page.click("input[type=submit]")

            expect(page.locator("#repid-connection")).to_have_text("connected")
            ready = page.locator('#repid-queues tr[data-queue="default"] td[data-col="ready"]')
            expect(ready).to_have_text("2")
            expect(page.locator("#repid-throughput")).to_have_text("0.00")

            off_loop(lambda: Job("noop").enqueue())  # pushed without reloading the page
            expect(ready).to_have_text("3")
        finally:
            browser.close()
