"""A real headless Chromium draws the monitor's charts of the last hour (the vendored uPlot,
served as a static file) and redraws them when jobs finish, in the light and the dark theme;
the queue table shows the limits in force.
Skipped without ``/usr/bin/chromium`` unless ``REPID_TEST_REQUIRE_CHROMIUM=1``."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from repid_django import Queue, get_connection
from repid_django.engine.limits import Limits
from repid_django.models import JobRecord, JobStatus, QueueSample
from repid_django.monitor import history

from .test_browser_admin import chromium, off_loop  # noqa: F401 - the fixture is used
from .test_browser_monitor import asgi_server, on_test_redis, serve_static  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
]


def finish_jobs(prefix: str, count: int) -> None:
    now = timezone.now()
    JobRecord.objects.bulk_create(
        JobRecord(
            job_id=f"{prefix}{n}",
            actor="noop",
            queue="default",
            status=JobStatus.SUCCEEDED,
            finished_at=now,
            updated_at=now,
        )
        for n in range(count)
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_charts_draw_and_update(
    chromium: Path,  # noqa: F811 - the fixture imported above
    asgi_server: str,  # noqa: F811
    on_test_redis: None,  # noqa: F811
    django_user_model: Any,
    scheme: str,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    history.reset()
    user = django_user_model.objects.create_user("ops", password="ops-pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_jobrecord"))
    minute = timezone.now().replace(second=0, microsecond=0)
    QueueSample.objects.create(queue="default", minute=minute - timedelta(minutes=3), ready=4)
    finish_jobs("before", 3)
    Queue("default").declare()
    connection = get_connection()
    limits = {None: Limits(concurrency=3), "process_images": Limits(concurrency=2)}
    connection.call(lambda: connection.message_broker.set_limits("default", limits), 5)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(color_scheme=scheme)  # type: ignore[arg-type]
            page.route("**/static/**", serve_static)
            page.goto(f"{asgi_server}/admin/repid_django/monitor/")
            page.fill("#id_username", "ops")
            page.fill("#id_password", "ops-pw")
            page.click("input[type=submit]")

            expect(page.locator("#repid-connection")).to_have_text("connected")
            cell = page.locator('#repid-queues tr[data-queue="default"] td[data-col="limits"]')
            expect(cell).to_have_text("queue: 3 at onceprocess_images: 2 at once")
            throughput = page.locator("#repid-chart-throughput")
            depth = page.locator("#repid-chart-depth")
            expect(throughput.locator("canvas")).to_be_visible()
            expect(depth.locator("canvas")).to_be_visible()
            expect(throughput).to_have_attribute("data-points", "60")
            expect(depth).to_have_attribute("data-points", "60")
            first = throughput.get_attribute("data-latest") or ""
            assert first.startswith("succeeded=")
            assert float(throughput.get_attribute("data-sum") or 0) > 0  # the 3 finished jobs
            assert float(depth.get_attribute("data-sum") or 0) == 4  # the one sample

            # The axes are drawn in the theme's text colour (readable on its background).
            fg = page.evaluate(
                "getComputedStyle(document.documentElement).getPropertyValue('--body-fg')"
            ).strip()
            assert fg
            legend = page.locator("#repid-chart-throughput .u-legend").first
            expect(legend).to_contain_text("succeeded/s")
            legend_colour = legend.evaluate("node => getComputedStyle(node).color")
            body_colour = page.evaluate("getComputedStyle(document.body).color")
            assert legend_colour == body_colour

            off_loop(lambda: finish_jobs("after", 40))  # pushed without reloading the page
            expect(throughput).not_to_have_attribute("data-latest", first, timeout=15_000)
            later = float((throughput.get_attribute("data-latest") or "").split()[0].split("=")[1])
            assert later > float(first.split()[0].split("=")[1])
            if os.environ.get("REPID_TEST_SCREENSHOTS"):
                page.screenshot(path=f"{os.environ['REPID_TEST_SCREENSHOTS']}/charts-{scheme}.png")
        finally:
            browser.close()
