"""What a new user reads: attempts counted from 1 everywhere ("1 of 1" for a first-try success,
"3 of 3" for a job that ran three times, as its dead letter counts them), results as JSON on the
example's ``/jobs/`` page, and the monitor's breadcrumbs in the admin's style and words."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from repid_django import Job
from repid_django.models import DeadLetterRecord, JobRecord, JobStatus

from .test_admin import login, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def record(job_id: str, **values: Any) -> JobRecord:
    return JobRecord.objects.create(job_id=job_id, actor="noop", queue="default", **values)


@pytest.mark.parametrize(
    ("values", "label"),
    [
        ({"attempt": 0, "max_retries": 0, "status": JobStatus.SUCCEEDED}, "1 of 1"),
        ({"attempt": 2, "max_retries": 2, "status": JobStatus.DEAD}, "3 of 3"),
        ({"attempt": 0, "max_retries": 2, "status": JobStatus.RETRYING}, "1 of 3"),
        ({"attempt": 1, "max_retries": 2, "status": JobStatus.RUNNING}, "2 of 3"),
        ({"attempt": 0, "max_retries": 2, "status": JobStatus.QUEUED}, "0 of 3"),
    ],
)
def test_attempts_count_the_runs_from_one(values: dict[str, Any], label: str) -> None:
    assert record("j", **values).attempts_label == label


def test_the_admin_and_the_dead_letter_agree_on_a_job_that_ran_three_times(
    client: Client, django_user_model: Any, run_worker: Callable[..., str]
) -> None:
    job_id = Job("flaky", args={"tag": "thrice", "fail_times": 5}, retries=2).enqueue().value
    ok_id = Job("flaky", args={"tag": "once", "fail_times": 0}).enqueue().value

    def dead_letter() -> DeadLetterRecord | None:
        return DeadLetterRecord.objects.filter(job_id=job_id).first()

    for _ in range(10):  # retries are delayed: run bursts until the job is dead-lettered
        run_worker()
        if dead_letter() is not None:
            break
    letter = wait_for(dead_letter)
    assert letter.attempts == 3
    job = JobRecord.objects.get(job_id=job_id)
    ok = wait_for(lambda: JobRecord.objects.filter(job_id=ok_id, status="succeeded").first())
    assert (job.attempts_label, ok.attempts_label) == ("3 of 3", "1 of 1")

    login(client, django_user_model, manage=False)
    listing = client.get(reverse("admin:repid_django_jobrecord_changelist")).content.decode()
    assert '<td class="field-attempts">3 of 3</td>' in listing
    assert '<td class="field-attempts">1 of 1</td>' in listing
    assert " / " not in listing.split('class="field-attempts">', 1)[1].split("<", 1)[0]


@pytest.fixture
def shop_site() -> Iterator[None]:
    """The example shop's app and URLs; the actors its import registers are forgotten after
    (later tests' workers must not consume the shop's queues)."""
    from repid_django.worker.discovery import registry

    by_name = {name: list(regs) for name, regs in registry._by_name.items()}
    shortcuts = dict(registry.shortcut_router.actors)
    apps = [*django_settings.INSTALLED_APPS, "example_project.shop"]
    try:
        with override_settings(INSTALLED_APPS=apps, ROOT_URLCONF="example_project.urls"):
            yield
    finally:
        registry._by_name.clear()
        registry._by_name.update(by_name)
        registry.shortcut_router.actors.clear()
        registry.shortcut_router.actors.update(shortcuts)


def test_the_example_jobs_page_shows_json_results_and_attempts_from_one(
    shop_site: None,
) -> None:
    from example_project.shop import views

    record(
        "a1",
        status=JobStatus.SUCCEEDED,
        # (in the order PostgreSQL's jsonb keeps keys: shorter first, then alphabetical)
        result={"note": None, "sent": True, "order": 1},
    )
    record("a2", status=JobStatus.DEAD, attempt=2, max_retries=2, error="RuntimeError: no")
    html = views.jobs(RequestFactory().get("/jobs/")).content.decode()
    assert "{&quot;note&quot;: null, &quot;sent&quot;: true, &quot;order&quot;: 1}" in html
    assert "True" not in html
    assert "None}" not in html
    assert "<td>1 of 1</td>" in html
    assert "<td>3 of 3</td>" in html


def test_the_monitor_breadcrumbs_are_the_admins(client: Client, django_user_model: Any) -> None:
    login(client, django_user_model, manage=False)
    html = client.get(reverse("repid_monitor:monitor")).content.decode()
    crumbs = html.split('<ol class="breadcrumbs">', 1)[1].split("</ol>", 1)[0]
    assert ">Background jobs</a></li>" in crumbs
    assert '<li aria-current="page">Live monitor</li>' in crumbs
    assert "Repid" not in crumbs
