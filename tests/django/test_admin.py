"""The admin console against a real Redis: pages, permissions, and what each operation does to
the broker and to the mirrored rows (a requeued dead letter really runs again)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from repid_django import Job, Queue, ops
from repid_django.engine.brokers.base import QueueStats
from repid_django.models import DeadLetterRecord, JobRecord, JobStatus, QueueRecord, WorkerRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

RunWorker = Callable[..., str]
PREFIX = "admin:repid_django"


def wait_for[T](probe: Callable[[], T | None], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met within the deadline")


def stats(queue: str = "default") -> QueueStats:
    return Queue(queue).stats().value


def make_dead(run_worker: RunWorker, tag: str) -> DeadLetterRecord:
    """A job of ``flaky`` that fails its only run: dead-lettered, recorded by the mirror.
    Its next run succeeds (``fail_times=1``)."""
    job_id = Job("flaky", args={"tag": tag, "fail_times": 1}).enqueue().value
    run_worker()
    return wait_for(lambda: DeadLetterRecord.objects.filter(job_id=job_id).first())


def login(client: Client, django_user_model: Any, *, manage: bool, name: str = "staff") -> Any:
    user = django_user_model.objects.create_user(name, password="pw", is_staff=True)
    wanted = Permission.objects.filter(
        content_type__app_label="repid_django", codename__startswith="view_"
    )
    user.user_permissions.add(*wanted)
    if manage:
        user.user_permissions.add(Permission.objects.get(codename="manage_jobs"))
    client.force_login(user)
    return user


@pytest.fixture
def manager(client: Client, django_user_model: Any) -> Client:
    login(client, django_user_model, manage=True)
    return client


@pytest.fixture
def viewer(client: Client, django_user_model: Any) -> Client:
    login(client, django_user_model, manage=False)
    return client


def op_url(model: str, kind: str, arg: object) -> str:
    return reverse(f"{PREFIX}_{model}_{kind}", args=(arg,))


# ---------------------------------------------------------------------------- looking


def test_anonymous_is_sent_to_login_and_changes_nothing(
    client: Client, run_worker: RunWorker
) -> None:
    letter = make_dead(run_worker, "anon")
    for url in (
        reverse(f"{PREFIX}_jobrecord_changelist"),
        reverse("admin:app_list", args=("repid_django",)),
    ):
        answer = client.get(url)
        assert answer.status_code == 302
        assert answer["Location"].startswith(reverse("admin:login"))
    answer = client.post(op_url("deadletterrecord", "requeue", letter.pk))
    assert answer.status_code == 302
    assert reverse("admin:login") in answer["Location"]
    assert stats().dead == 1
    assert stats().ready == 0


def test_viewer_sees_every_page_without_operations(viewer: Client, run_worker: RunWorker) -> None:
    letter = make_dead(run_worker, "view")
    job = JobRecord.objects.get(job_id=letter.job_id)
    pages = [
        reverse("admin:app_list", args=("repid_django",)),
        *(
            reverse(f"{PREFIX}_{m}_changelist")
            for m in ("jobrecord", "deadletterrecord", "queuerecord", "workerrecord")
        ),
        reverse(f"{PREFIX}_jobrecord_change", args=(job.pk,)),
        reverse(f"{PREFIX}_deadletterrecord_change", args=(letter.pk,)),
        reverse(f"{PREFIX}_workerrecord_change", args=(WorkerRecord.objects.get().pk,)),
    ]
    for url in pages:
        answer = viewer.get(url)
        assert answer.status_code == 200, url
        html = answer.content.decode()
        assert "repid-op" not in html, url  # no operation buttons
        assert "Requeue selected" not in html, url
        assert "Purge waiting" not in html, url
    dead_page = viewer.get(
        reverse(f"{PREFIX}_deadletterrecord_change", args=(letter.pk,))
    ).content.decode()
    assert "RuntimeError: failure 1 of 1" in dead_page
    assert viewer.get(reverse(f"{PREFIX}_jobrecord_add")).status_code == 403


def test_manager_sees_the_operations(manager: Client, run_worker: RunWorker) -> None:
    letter = make_dead(run_worker, "ops")
    changelist = manager.get(reverse(f"{PREFIX}_deadletterrecord_changelist")).content.decode()
    assert "Requeue selected dead letters" in changelist
    page = manager.get(reverse(f"{PREFIX}_deadletterrecord_change", args=(letter.pk,)))
    assert op_url("deadletterrecord", "requeue", letter.pk) in page.content.decode()
    index = manager.get(reverse("admin:app_list", args=("repid_django",))).content.decode()
    assert op_url("queuerecord", "requeue_dead", "default") in index


def test_viewer_gets_403_on_every_operation_and_nothing_changes(
    viewer: Client, run_worker: RunWorker
) -> None:
    letter = make_dead(run_worker, "403")
    job = JobRecord.objects.get(job_id=letter.job_id)
    Job("noop").enqueue()
    urls = [
        op_url("deadletterrecord", "requeue", letter.pk),
        op_url("deadletterrecord", "purge", letter.pk),
        op_url("jobrecord", "retry", job.pk),
        op_url("jobrecord", "cancel", job.pk),
        *(
            op_url("queuerecord", kind, "default")
            for kind in ("purge", "requeue_dead", "purge_dead")
        ),
    ]
    for url in urls:
        assert viewer.post(url, {"confirm": "yes"}).status_code == 403, url
    changelist = reverse(f"{PREFIX}_deadletterrecord_changelist")
    answer = viewer.post(
        changelist, {"action": "requeue_selected", "_selected_action": [letter.pk]}
    )
    assert answer.status_code in (200, 302)  # Django refuses an unknown action: nothing runs
    assert stats() == QueueStats("default", ready=1, dead=1)
    assert DeadLetterRecord.objects.get(pk=letter.pk).requeued_at is None


def test_get_on_an_operation_is_405_and_changes_nothing(
    manager: Client, run_worker: RunWorker
) -> None:
    letter = make_dead(run_worker, "get")
    Job("noop").enqueue()
    for url in (
        op_url("deadletterrecord", "requeue", letter.pk),
        op_url("deadletterrecord", "purge", letter.pk),
        op_url("queuerecord", "purge", "default"),
        op_url("queuerecord", "requeue_dead", "default"),
    ):
        assert manager.get(url, {"confirm": "yes"}).status_code == 405, url
    assert stats() == QueueStats("default", ready=1, dead=1)


def test_a_post_without_csrf_token_is_refused(
    django_user_model: Any, run_worker: RunWorker
) -> None:
    letter = make_dead(run_worker, "csrf")
    strict = Client(enforce_csrf_checks=True)
    login(strict, django_user_model, manage=True)
    assert strict.post(op_url("deadletterrecord", "requeue", letter.pk)).status_code == 403
    assert stats().dead == 1


def test_tracebacks_are_escaped_in_pre_and_arguments_pretty_printed(viewer: Client) -> None:
    job = JobRecord.objects.create(
        job_id="x1",
        actor="evil",
        queue="default",
        status=JobStatus.FAILED,
        args={"b": [1, 2], "a": "<b>"},
        error="Traceback ...\nValueError: <script>alert(1)</script>",
    )
    html = viewer.get(reverse(f"{PREFIX}_jobrecord_change", args=(job.pk,))).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "ValueError: &lt;script&gt;alert(1)&lt;/script&gt;</pre>" in html
    assert "{\n  &quot;a&quot;: &quot;&lt;b&gt;&quot;,\n  &quot;b&quot;: [\n    1," in html


def test_filters_and_search(viewer: Client) -> None:
    for n, (actor, status) in enumerate(
        [("alpha", "succeeded"), ("beta", "failed"), ("alpha", "dead")]
    ):
        JobRecord.objects.create(job_id=f"id{n}abc", actor=actor, queue="default", status=status)
    url = reverse(f"{PREFIX}_jobrecord_changelist")

    def listed(**query: str) -> set[str]:
        answer = viewer.get(url, query)
        assert answer.status_code == 200
        return {row.job_id for row in answer.context["cl"].result_list}

    assert listed(status="failed") == {"id1abc"}
    assert listed(actor="alpha") == {"id0abc", "id2abc"}
    assert listed(q="id2") == {"id2abc"}
    assert listed(q="beta") == {"id1abc"}


def test_dashboard_falls_back_to_the_snapshot_and_redacts_the_password(
    viewer: Client, settings: Any
) -> None:
    from tests.redis_server import free_port

    QueueRecord.objects.create(name="mail", ready=7, dead=2)
    settings.REPID = {**settings.REPID, "BROKER_URL": f"redis://:s3cret@127.0.0.1:{free_port()}/0"}
    html = viewer.get(reverse("admin:app_list", args=("repid_django",))).content.decode()
    assert "s3cret" not in html
    assert "redis://:***@127.0.0.1" in html
    assert "snapshot" in html
    assert 'data-queue="mail"' in html
    row = html.split('data-queue="mail"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="num">7</td>' in row


def test_dashboard_shows_live_depths_and_workers(viewer: Client, run_worker: RunWorker) -> None:
    Job("noop").enqueue()
    run_worker()
    for _ in range(3):
        Job("noop", deferred_until=time.time() + 3600).enqueue()
    html = viewer.get(reverse("admin:app_list", args=("repid_django",))).content.decode()
    row = html.split('data-queue="default"', 1)[1].split("</tr>", 1)[0]
    assert [cell.split("<", 1)[0] for cell in row.split('<td class="num">')[1:]][:3] == [
        "0",
        "3",
        "0",
    ]
    assert "live" in html
    assert "No worker has reported yet" not in html
    workers = viewer.get(reverse(f"{PREFIX}_workerrecord_changelist")).content.decode()
    assert "repid-badge" in workers
    assert "s ago" in workers


# ------------------------------------------------------------------------- operations


def test_requeue_one_dead_letter_puts_it_back_and_a_worker_runs_it(
    manager: Client, run_worker: RunWorker
) -> None:
    letter = make_dead(run_worker, "requeue")
    assert stats() == QueueStats("default", dead=1)
    answer = manager.post(op_url("deadletterrecord", "requeue", letter.pk), follow=True)
    assert "Requeued 1 dead letter(s)" in answer.content.decode()
    assert stats() == QueueStats("default", ready=1, dead=0)
    assert DeadLetterRecord.objects.get(pk=letter.pk).requeued_at is not None
    run_worker()
    job = wait_for(
        lambda: JobRecord.objects.filter(job_id=letter.job_id, status=JobStatus.SUCCEEDED).first()
    )
    assert job.result == "done"


def test_requeue_selected_dead_letters_action(manager: Client, run_worker: RunWorker) -> None:
    letters = [make_dead(run_worker, f"sel{n}") for n in range(2)]
    manager.post(
        reverse(f"{PREFIX}_deadletterrecord_changelist"),
        {"action": "requeue_selected", "_selected_action": [letter.pk for letter in letters]},
    )
    assert stats() == QueueStats("default", ready=2, dead=0)


def test_requeue_all_of_a_queue_asks_first(manager: Client, run_worker: RunWorker) -> None:
    make_dead(run_worker, "all1")
    make_dead(run_worker, "all2")
    url = op_url("queuerecord", "requeue_dead", "default")
    page = manager.post(url)
    assert page.status_code == 200
    assert "Requeue all dead letters of queue default?" in page.content.decode()
    assert stats().dead == 2  # asking changed nothing
    manager.post(url, {"confirm": "yes"})
    assert stats() == QueueStats("default", ready=2, dead=0)
    assert not DeadLetterRecord.objects.filter(requeued_at=None).exists()


def test_purge_queue_asks_first_and_removes_waiting_jobs(manager: Client) -> None:
    for _ in range(3):
        Job("noop").enqueue()
    Job("noop", deferred_until=time.time() + 3600).enqueue()
    url = op_url("queuerecord", "purge", "default")
    page = manager.post(url).content.decode()
    assert "Purge queue default?" in page
    assert "4 now" in page
    assert stats().ready == 3
    manager.post(url, {"confirm": "yes"})
    assert stats() == QueueStats("default")


def test_purge_dead_letters_of_queue_via_changelist_action(
    manager: Client, run_worker: RunWorker
) -> None:
    letter = make_dead(run_worker, "pd")
    record = QueueRecord.objects.get_or_create(name="default")[0]
    changelist = reverse(f"{PREFIX}_queuerecord_changelist")
    form = {"action": "purge_all_dead", "_selected_action": [record.pk]}
    assert (
        "Delete all dead letters of selected queues?"
        in manager.post(changelist, form).content.decode()
    )
    assert stats().dead == 1
    manager.post(changelist, {**form, "confirm": "yes"})
    assert stats().dead == 0
    assert DeadLetterRecord.objects.get(pk=letter.pk).purged_at is not None


def test_retry_a_dead_job_whose_letter_is_gone_enqueues_a_new_run(
    manager: Client, run_worker: RunWorker
) -> None:
    letter = make_dead(run_worker, "retry")
    ops.purge_dead("default")  # the dead letter expired, say: retry must enqueue anew
    job = JobRecord.objects.get(job_id=letter.job_id)
    assert job.status == JobStatus.DEAD
    manager.post(op_url("jobrecord", "retry", job.pk))
    new = JobRecord.objects.exclude(pk=job.pk).get(actor="flaky")
    assert new.args == {"tag": "retry", "fail_times": 1}
    assert new.status == JobStatus.QUEUED
    run_worker()
    assert wait_for(
        lambda: JobRecord.objects.filter(pk=new.pk, status=JobStatus.SUCCEEDED).exists()
    )


def test_cancel_a_waiting_job(manager: Client) -> None:
    job_id = Job("noop", deferred_until=time.time() + 3600).enqueue().value
    record = JobRecord.objects.create(job_id=job_id, actor="noop", queue="default")
    answer = manager.post(op_url("jobrecord", "cancel", record.pk), follow=True)
    assert "was removed from its queue" in answer.content.decode()
    assert stats().delayed == 0
    assert JobRecord.objects.get(pk=record.pk).status == JobStatus.CANCELLED
    again = manager.post(op_url("jobrecord", "cancel", record.pk), follow=True).content.decode()
    assert "is not waiting" in again
