"""A real headless Chromium on the live monitor (Daphne, the example's ASGI app): a paused queue
carries a *paused* badge, a running job shows its progress bar and text, both follow the broker
without a reload, and cancelled jobs are counted apart from failed ones."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from repid_django import Queue, get_connection, ops
from repid_django.models import JobRecord, JobStatus

from .test_browser_admin import chromium, off_loop  # noqa: F401 - the fixture is used
from .test_browser_monitor import asgi_server, on_test_redis, serve_static  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


def report(job_id: str, value: float, text: str) -> None:
    data = {"value": value, "text": text, "at": time.time()}
    connection = get_connection()
    connection.call(lambda: connection.message_broker.set_progress("media", job_id, data), 5)


def test_the_monitor_shows_paused_queues_and_progress_live(
    chromium: Path,  # noqa: F811 - the fixture imported above
    asgi_server: str,  # noqa: F811
    on_test_redis: None,  # noqa: F811
    django_user_model: Any,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    ops_user = django_user_model.objects.create_user("ops", password="ops-pw", is_staff=True)
    ops_user.user_permissions.add(Permission.objects.get(codename="view_jobrecord"))
    Queue("media").declare()
    ops.pause_queue("media")
    JobRecord.objects.create(
        job_id="img-1",
        actor="process_images",
        queue="media",
        status=JobStatus.RUNNING,
        started_at=timezone.now(),
    )
    report("img-1", 0.25, "10 of 40 images")
    JobRecord.objects.create(
        job_id="gone",
        actor="process_images",
        queue="media",
        status=JobStatus.CANCELLED,
        finished_at=timezone.now(),
    )

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
            media = page.locator('#repid-queues tr[data-queue="media"]')
            expect(media.locator(".repid-paused")).to_have_text("paused")
            job = page.locator('#repid-running tr[data-job="img-1"]')
            expect(job).to_contain_text("process_images")
            expect(job.locator(".repid-progress-text")).to_have_text("10 of 40 images")
            expect(job.locator("progress")).to_have_attribute("value", "0.25")
            expect(job.locator("strong")).to_have_text("25%")
            expect(page.locator("#repid-cancelled")).to_have_text("1")
            expect(page.locator("#repid-failed")).to_have_text("0")

            off_loop(lambda: report("img-1", 0.5, "20 of 40 images"))  # pushed, no reload
            expect(job.locator(".repid-progress-text")).to_have_text("20 of 40 images")
            off_loop(lambda: ops.resume_queue("media"))
            expect(media.locator(".repid-paused")).to_have_count(0)
        finally:
            browser.close()
