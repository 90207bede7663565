"""A real headless Chromium cancels a running job from its admin page: the page shows the job's
progress bar, the Cancel button stops the actor (a real worker, with the ORM mirror, on its own
loop in this process) within seconds, and the page then reads Cancelled.

Skipped without ``/usr/bin/chromium`` (unless ``REPID_TEST_REQUIRE_CHROMIUM=1``), like
``test_browser_admin.py``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from repid_django import Job, Queue
from repid_django.models import DeadLetterRecord, JobRecord, JobStatus
from tests.django import cancel_actors
from tests.django.test_pause_cancel_worker import STOP_BOUND, running_worker

from .test_browser_admin import chromium, off_loop, repid_on_test_redis, wait_for  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_cancel_a_running_job_from_its_admin_page(
    chromium: Path,  # noqa: F811 - the fixture
    repid_on_test_redis: None,  # noqa: F811 - the fixture
    live_server: Any,
    django_user_model: Any,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    user = django_user_model.objects.create_user("ops", password="ops-pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="repid_django",
            codename__in=("view_jobrecord", "view_deadletterrecord", "manage_jobs"),
        )
    )
    Queue("default").declare()
    with running_worker(mirror=True, concurrency=2):
        job_id = Job("long_async", args={"tag": "browser"}, retries=3).enqueue().value
        record = wait_for(
            lambda: JobRecord.objects.filter(job_id=job_id, status=JobStatus.RUNNING).first()
        )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(chromium),
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            try:
                page = browser.new_page()
                page.goto(f"{live_server.url}/admin/repid_django/jobrecord/{record.pk}/change/")
                page.fill("#id_username", "ops")
                page.fill("#id_password", "ops-pw")
                page.click("input[type=submit]")
                expect(page.locator(".repid-badge")).to_contain_text(["Running"])
                expect(page.locator("progress.repid-progress")).to_be_visible()
                expect(page.locator(".repid-progress-text")).to_contain_text(" of 600 images")

                asked = time.monotonic()
                page.click("button:has-text('Cancel this job')")
                expect(page.locator(".messagelist")).to_contain_text(
                    "is running: its worker was asked to stop it"
                )
                off_loop(
                    lambda: wait_for(
                        lambda: "browser stopped" in cancel_actors.EVENTS, STOP_BOUND + 1
                    )
                )
                took = cancel_actors.EVENTS["browser stopped"] - asked
                assert took < STOP_BOUND, f"stopped {took:.2f}s after the click"
                off_loop(
                    lambda: wait_for(
                        lambda: JobRecord.objects.filter(
                            job_id=job_id, status=JobStatus.CANCELLED
                        ).exists()
                    )
                )
                page.reload()
                expect(page.locator(".repid-badge")).to_contain_text(["Cancelled"])
                expect(page.locator("button:has-text('Cancel this job')")).to_have_count(0)
                expect(page.locator("button:has-text('Retry this job')")).to_have_count(1)
            finally:
                browser.close()
    letter = DeadLetterRecord.objects.get(job_id=job_id)
    assert letter.reason == "cancelled"
    assert JobRecord.objects.get(job_id=job_id).attempt == 0  # not retried
