"""A real headless Chromium edits a schedule in the admin while a worker runs it: a new interval
and new args, then disabled, then "Run now"; the runs follow within seconds.

Skipped when ``/usr/bin/chromium`` is missing (see ``test_browser_admin``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis
from django.contrib.auth.models import Permission

from repid_django.models import Schedule
from tests.django.test_schedules_worker import running_worker, runs
from tests.django.testapp.models import Note
from tests.django.workers import wait_for

from .test_browser_admin import chromium, off_loop, repid_on_test_redis  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]


def notes(tag: str) -> int:
    return off_loop(lambda: Note.objects.filter(tag=tag).count())


def test_editing_a_schedule_in_the_browser_changes_what_the_worker_runs(
    chromium: Path,  # noqa: F811 - the fixture imported above
    repid_on_test_redis: None,  # noqa: F811
    live_server: Any,
    django_user_model: Any,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    user = django_user_model.objects.create_user("ops", password="ops-pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=("view_schedule", "change_schedule", "view_jobrecord")
        )
    )
    row = Schedule.objects.create(name="pulse", actor="record", every=1, args={"tag": "one"})
    with running_worker() as worker, sync_playwright() as playwright:
        wait_for(lambda: notes("one") >= 2, 10, "runs every second")
        browser = playwright.chromium.launch(
            executable_path=str(chromium),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.goto(f"{live_server.url}/admin/repid_django/schedule/{row.pk}/change/")
            page.fill("#id_username", "ops")
            page.fill("#id_password", "ops-pw")
            page.click("input[type=submit]")
            expect(page.locator(".field-last_run")).to_contain_text("sched:pulse:")
            expect(page.locator(".field-next_runs_preview li")).to_have_count(5)

            page.fill("#id_every", "2")
            page.fill("#id_args", '{"tag": "two"}')
            page.click("input[name=_continue]")
            expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
            edited = time.monotonic()
            wait_for(lambda: notes("two") >= 2, 10, "runs with the new args")
            assert time.monotonic() - edited < 7
            two = [t for t, tag in runs(redis_client, key_prefix) if tag == "two"]
            assert all(t % 2000 == 0 for t in two)

            page.uncheck("#id_enabled")
            page.click("input[name=_continue]")
            expect(page.locator(".field-next_runs_preview")).to_contain_text("disabled")
            runner = worker.runner
            assert runner is not None
            assert runner.scheduler is not None
            scheduler = runner.scheduler
            wait_for(
                lambda: [s.enabled for s in scheduler.schedules if s.name == "pulse"] == [False],
                5,
                "the worker to read the disabled schedule",
            )
            msgs = f"{key_prefix}:{{default}}:msgs"
            wait_for(lambda: redis_client.hlen(msgs) == 0, 10, "the last job to finish")
            drained_at, before = time.time(), notes("two")
            marks = f"{key_prefix}:{{default}}:sched"
            wait_for(
                lambda: float(redis_client.hget(marks, "pulse") or 0) > drained_at,
                5,
                "a tick handled while disabled",
            )
            assert notes("two") == before

            page.click("button:has-text('Run now')")  # still runs on demand
            expect(page.locator(".messagelist")).to_contain_text("enqueued job")
            wait_for(lambda: notes("two") == before + 1, 10, "the job run now")
        finally:
            browser.close()
