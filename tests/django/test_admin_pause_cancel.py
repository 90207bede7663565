"""The admin's pause/resume and cancel operations and the progress it shows, against a real
Redis: POST only, permission checked, what each does to the broker and the rows; the paused
state on every page that shows queues, and in the monitor's snapshot."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from repid_django import Job, Queue, get_connection, ops
from repid_django.models import DeadLetterRecord, JobRecord, JobStatus, QueueRecord
from repid_django.monitor.snapshot import build_snapshot

from .test_admin import PREFIX, login, op_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

DASHBOARD = reverse("admin:app_list", args=("repid_django",))


@pytest.fixture
def manager(client: Client, django_user_model: Any) -> Client:
    login(client, django_user_model, manage=True)
    return client


@pytest.fixture
def viewer(client: Client, django_user_model: Any) -> Client:
    login(client, django_user_model, manage=False)
    return client


def paused(name: str = "default") -> bool:
    return Queue(name).stats().value.paused


def set_progress(queue: str, job_id: str, value: float, text: str, ago: float = 2.0) -> None:
    data = {"value": value, "text": text, "at": time.time() - ago}
    connection = get_connection()
    connection.call(lambda: connection.message_broker.set_progress(queue, job_id, data), 5)


def queue_row(html: str, name: str) -> str:
    return html.split(f'data-queue="{name}"', 1)[1].split("</tr>", 1)[0]


def messages_of(answer: Any) -> list[str]:
    return [str(m) for m in answer.context["messages"]]


# ------------------------------------------------------------------------- permissions


def test_viewers_get_403_and_get_requests_405_and_nothing_changes(
    viewer: Client, client: Client, django_user_model: Any
) -> None:
    Queue("default").declare()
    job_id = Job("noop", deferred_until=time.time() + 3600).enqueue().value
    record = JobRecord.objects.create(job_id=job_id, actor="noop", queue="default")
    urls = [
        op_url("queuerecord", "pause", "default"),
        op_url("queuerecord", "resume", "default"),
        op_url("jobrecord", "cancel", record.pk),
    ]
    for url in urls:
        assert viewer.post(url).status_code == 403, url
        assert viewer.get(url).status_code == 403, url
    ops.pause_queue("default")
    assert viewer.post(op_url("queuerecord", "resume", "default")).status_code == 403
    assert paused()
    ops.resume_queue("default")

    viewer.logout()
    login(client, django_user_model, manage=True, name="boss")
    for url in urls:
        assert client.get(url).status_code == 405, url
    assert not paused()
    assert Queue("default").stats().value.delayed == 1
    assert JobRecord.objects.get(pk=record.pk).status == JobStatus.QUEUED


def test_viewers_see_the_state_but_no_button(viewer: Client) -> None:
    Queue("mail").declare()
    record = QueueRecord.objects.create(name="mail")
    ops.pause_queue("mail")
    changelist = viewer.get(reverse(f"{PREFIX}_queuerecord_changelist")).content.decode()
    assert "paused" in changelist
    assert "repid-switch" not in changelist
    assert "Pause selected queues" not in changelist
    page = viewer.get(reverse(f"{PREFIX}_queuerecord_change", args=(record.pk,))).content.decode()
    assert "paused" in page
    assert op_url("queuerecord", "resume", "mail") not in page
    dashboard = viewer.get(DASHBOARD).content.decode()
    assert "repid-paused" in queue_row(dashboard, "mail")
    assert op_url("queuerecord", "resume", "mail") not in dashboard


# --------------------------------------------------------------------------- pause/resume


def test_pause_and_resume_from_the_dashboard(manager: Client) -> None:
    Queue("mail").declare()
    dashboard = manager.get(DASHBOARD).content.decode()
    row = queue_row(dashboard, "mail")
    assert op_url("queuerecord", "pause", "mail") in row
    assert "repid-paused" not in row

    answer = manager.post(op_url("queuerecord", "pause", "mail"), {"next": DASHBOARD}, follow=True)
    assert answer.redirect_chain[-1][0] == DASHBOARD
    assert any("Paused queue 'mail'" in m for m in messages_of(answer))
    assert paused("mail")
    row = queue_row(answer.content.decode(), "mail")
    assert "repid-paused" in row
    assert op_url("queuerecord", "resume", "mail") in row
    assert op_url("queuerecord", "pause", "mail") not in row

    answer = manager.post(op_url("queuerecord", "resume", "mail"), {"next": DASHBOARD}, follow=True)
    assert any("Resumed queue 'mail'" in m for m in messages_of(answer))
    assert not paused("mail")
    assert "repid-paused" not in queue_row(answer.content.decode(), "mail")


def test_pause_from_the_queue_page_and_changelist(manager: Client) -> None:
    Queue("mail").declare()
    record = QueueRecord.objects.create(name="mail")
    page_url = reverse(f"{PREFIX}_queuerecord_change", args=(record.pk,))
    page = manager.get(page_url).content.decode()
    assert "active" in page
    assert "Pause queue" in page
    assert "Resume queue" not in page
    answer = manager.post(op_url("queuerecord", "pause", "mail"), {"next": page_url})
    assert answer.status_code == 302
    assert answer["Location"] == page_url
    page = manager.get(page_url).content.decode()
    assert "paused" in page
    assert "Resume queue" in page
    assert "Pause queue" not in page

    changelist_url = reverse(f"{PREFIX}_queuerecord_changelist")
    changelist = manager.get(changelist_url).content.decode()
    # The row's button submits the changelist's form to the queue's resume URL.
    assert f'formaction="{op_url("queuerecord", "resume", "mail")}"' in changelist
    assert 'formmethod="post"' in changelist
    answer = manager.post(
        op_url("queuerecord", "resume", "mail"),
        {"next": changelist_url, "action": "", "index": "0"},  # what the changelist form sends
    )
    assert answer["Location"] == changelist_url
    assert not paused("mail")


def test_pause_and_resume_selected_queues(manager: Client) -> None:
    records = []
    for name in ("a", "b", "c"):
        Queue(name).declare()
        records.append(QueueRecord.objects.create(name=name))
    changelist = reverse(f"{PREFIX}_queuerecord_changelist")
    chosen = [records[0].pk, records[1].pk]
    manager.post(changelist, {"action": "pause_queues", "_selected_action": chosen})
    assert [paused(name) for name in "abc"] == [True, True, False]
    manager.post(changelist, {"action": "resume_queues", "_selected_action": [records[1].pk]})
    assert [paused(name) for name in "abc"] == [True, False, False]


def test_a_bad_queue_name_is_404_and_an_outside_next_is_ignored(manager: Client) -> None:
    url = reverse(f"{PREFIX}_queuerecord_pause", args=("bad name",))
    assert manager.post(url).status_code == 404
    answer = manager.post(op_url("queuerecord", "pause", "x"), {"next": "https://evil.example/"})
    assert answer["Location"] == reverse(f"{PREFIX}_queuerecord_changelist")
    assert paused("x")


# ------------------------------------------------------------------------------- cancel


def test_the_job_page_offers_cancel_for_waiting_and_running_jobs_only(manager: Client) -> None:
    for status in JobStatus:
        row = JobRecord.objects.create(job_id=f"j-{status}", actor="a", queue="default")
        JobRecord.objects.filter(pk=row.pk).update(status=status)
        html = manager.get(reverse(f"{PREFIX}_jobrecord_change", args=(row.pk,))).content.decode()
        offered = op_url("jobrecord", "cancel", row.pk) in html
        assert offered == (status in ("queued", "retrying", "running")), status


def test_cancel_selected_says_what_happened_to_each(manager: Client) -> None:
    waiting_id = Job("noop", deferred_until=time.time() + 3600).enqueue().value
    waiting = JobRecord.objects.create(job_id=waiting_id, actor="noop", queue="default")
    gone = JobRecord.objects.create(job_id="gone", actor="noop", queue="default")
    done = JobRecord.objects.create(
        job_id="done", actor="noop", queue="default", status=JobStatus.SUCCEEDED
    )
    changelist = reverse(f"{PREFIX}_jobrecord_changelist")
    form = {"action": "cancel_selected", "_selected_action": [waiting.pk, gone.pk, done.pk]}
    page = manager.post(changelist, form).content.decode()
    assert "Cancel the selected jobs?" in page
    assert Queue("default").stats().value.delayed == 1  # asking changed nothing
    answer = manager.post(changelist, {**form, "confirm": "yes"}, follow=True)
    said = messages_of(answer)
    assert any(m.startswith("Removed 1 waiting job(s)") and waiting_id in m for m in said)
    assert any(m.startswith("1 job(s) had already finished") and "gone" in m for m in said)
    assert "Skipped 1 job(s) that had already finished." in said
    assert Queue("default").stats().value.delayed == 0
    assert JobRecord.objects.get(pk=waiting.pk).status == JobStatus.CANCELLED
    assert JobRecord.objects.get(pk=gone.pk).status == JobStatus.QUEUED  # the broker decides
    assert JobRecord.objects.get(pk=done.pk).status == JobStatus.SUCCEEDED


def test_cancelled_jobs_show_as_cancelled(manager: Client) -> None:
    row = JobRecord.objects.create(
        job_id="c1", actor="a", queue="default", status=JobStatus.CANCELLED
    )
    DeadLetterRecord.objects.create(job_id="c1", queue="default", actor="a", reason="cancelled")
    html = manager.get(reverse(f"{PREFIX}_jobrecord_change", args=(row.pk,))).content.decode()
    assert '<span class="repid-badge repid-grey">Cancelled</span>' in html
    assert "Retry this job" in html
    dead = manager.get(reverse(f"{PREFIX}_deadletterrecord_changelist")).content.decode()
    assert "Cancelled" in dead
    dashboard = manager.get(DASHBOARD).content.decode()
    assert "?status=cancelled" in dashboard


# ----------------------------------------------------------------------------- progress


def test_the_job_page_shows_the_progress_read_now(viewer: Client) -> None:
    row = JobRecord.objects.create(
        job_id="p1", actor="images", queue="media", status=JobStatus.RUNNING
    )
    url = reverse(f"{PREFIX}_jobrecord_change", args=(row.pk,))
    assert "repid-progress" not in viewer.get(url).content.decode()  # nothing reported yet
    set_progress("media", "p1", 0.4, "40 of 100 images", ago=3)
    html = viewer.get(url).content.decode()
    assert '<progress class="repid-progress" value="0.4000" max="1">40%</progress>' in html
    assert "<strong>40%</strong>" in html
    assert "40 of 100 images" in html
    assert "reported 3 s ago" in html
    set_progress("media", "p1", 0.75, "<b>75</b>", ago=0)  # read at each render, escaped
    html = viewer.get(url).content.decode()
    assert 'value="0.7500"' in html
    assert "&lt;b&gt;75&lt;/b&gt;" in html


def test_progress_shows_without_time_zone_support(viewer: Client, settings: Any) -> None:
    settings.USE_TZ = False
    row = JobRecord.objects.create(
        job_id="p2", actor="images", queue="media", status=JobStatus.RUNNING
    )
    set_progress("media", "p2", 0.5, "half", ago=5)
    html = viewer.get(reverse(f"{PREFIX}_jobrecord_change", args=(row.pk,))).content.decode()
    assert "reported 5 s ago" in html
    (job,) = build_snapshot()["running_jobs"]
    assert 4 <= job["progress"]["age"] < 60


def test_the_monitor_snapshot_has_progress_paused_queues_and_cancelled_counts() -> None:
    Queue("default").declare()
    Queue("media").declare()
    ops.pause_queue("media")
    running = JobRecord.objects.create(
        job_id="r1", actor="images", queue="media", status=JobStatus.RUNNING
    )
    JobRecord.objects.create(job_id="r2", actor="images", queue="media", status="running")
    set_progress("media", "r1", 0.25, "25 of 100 images", ago=1)
    job_id = Job("noop", queue="media").enqueue().value
    JobRecord.objects.create(job_id=job_id, actor="noop", queue="media")
    assert ops.cancel_job("media", job_id) == "removed"  # the row reads cancelled at once
    DeadLetterRecord.objects.create(job_id="x", queue="media", actor="a", reason="cancelled")

    snapshot = build_snapshot()
    row = next(q for q in snapshot["queues"] if q["name"] == "media")
    assert row["paused"] is True
    assert next(q for q in snapshot["queues"] if q["name"] == "default")["paused"] is False
    jobs = {job["job_id"]: job for job in snapshot["running_jobs"]}
    assert set(jobs) == {"r1", "r2"}
    assert jobs["r1"]["pk"] == running.pk
    progress = jobs["r1"]["progress"]
    assert (progress["value"], progress["percent"], progress["text"]) == (
        0.25,
        25,
        "25 of 100 images",
    )
    assert 0.5 <= progress["age"] < 30
    assert jobs["r2"]["progress"] is None
    assert snapshot["throughput"]["cancelled"] == 1
    assert snapshot["throughput"]["failed"] == 0
    assert snapshot["failures"] == []  # a cancelled dead letter is no failure
