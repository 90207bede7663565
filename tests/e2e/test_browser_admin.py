"""A real headless Chromium drives the admin console through requeuing a dead letter.

Skipped when ``/usr/bin/chromium`` is missing, unless ``REPID_TEST_REQUIRE_CHROMIUM=1`` (set by
CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connections

from repid_django import Job, Queue, conf
from repid_django.models import DeadLetterRecord, JobRecord, JobStatus

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def wait_for[T](probe: Callable[[], T | None], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met within the deadline")


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("REPID_TEST_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{CHROMIUM} is missing and REPID_TEST_REQUIRE_CHROMIUM=1")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    return CHROMIUM


@pytest.fixture
def repid_on_test_redis(
    settings: Any, redis_url: str, key_prefix: str, redis_client: Any
) -> Iterator[None]:
    settings.REPID = {**settings.REPID, "BROKER_URL": redis_url, "PREFIX": key_prefix}
    yield
    conf.reset()


def off_loop[T](fn: Callable[[], T]) -> T:
    """Run ``fn`` in another thread: Playwright's sync API keeps an event loop running in this
    one, where Django's ORM and the engine's sync calls refuse to run."""

    def run() -> T:
        try:
            return fn()
        finally:  # the thread's database connection (PostgreSQL warns about one left open)
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def run_worker() -> None:
    call_command("runworker", "--burst", "--no-reload", stderr=StringIO())


def test_requeue_a_dead_letter_from_the_admin(
    chromium: Path, repid_on_test_redis: None, live_server: Any, django_user_model: Any
) -> None:
    from playwright.sync_api import expect, sync_playwright

    user = django_user_model.objects.create_user("ops", password="ops-pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="repid_django",
            codename__in=(
                "view_deadletterrecord",
                "view_jobrecord",
                "view_queuerecord",
                "view_workerrecord",
                "manage_jobs",
            ),
        )
    )
    job_id = Job("flaky", args={"tag": "browser", "fail_times": 1}).enqueue().value
    run_worker()
    wait_for(lambda: DeadLetterRecord.objects.filter(job_id=job_id).exists())

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.goto(f"{live_server.url}/admin/repid_django/")
            page.fill("#id_username", "ops")
            page.fill("#id_password", "ops-pw")
            page.click("input[type=submit]")
            dashboard = page.locator("#repid-dashboard")
            expect(dashboard).to_contain_text("Queues")
            dead_count = page.locator('tr[data-queue="default"] td').nth(3)
            expect(dead_count).to_have_text("1")

            dead_count.locator("a").click()  # the queue's dead letters
            page.click(f"#result_list a:has-text('{job_id[:12]}')")
            expect(page.locator("pre.repid-traceback")).to_contain_text(
                "RuntimeError: failure 1 of 1"
            )
            page.click("button:has-text('Requeue this job')")
            expect(page.locator(".messagelist")).to_contain_text("Requeued 1 dead letter(s)")
            assert off_loop(lambda: Queue("default").stats().value.ready) == 1

            off_loop(run_worker)
            off_loop(
                lambda: wait_for(
                    lambda: JobRecord.objects.filter(
                        job_id=job_id, status=JobStatus.SUCCEEDED
                    ).exists()
                )
            )
            page.goto(f"{live_server.url}/admin/repid_django/jobrecord/?q={job_id}")
            expect(page.locator("#result_list")).to_contain_text("Succeeded")
        finally:
            browser.close()
