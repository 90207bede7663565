"""Schedules in the admin against a real Redis: the form's errors field by field, read-only code
and settings schedules, "run now" (POST only, change permission), next and last runs on the
change page, the dashboard and the monitor's snapshot."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.urls import reverse

from repid_django import Queue
from repid_django.engine.brokers.base import MessageBroker
from repid_django.engine.connection import get_connection
from repid_django.engine.schedules.scheduler import tick_id, tick_message
from repid_django.models import JobRecord, Schedule
from repid_django.monitor.snapshot import build_snapshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

ADD = reverse("admin:repid_django_schedule_add")
CHANGELIST = reverse("admin:repid_django_schedule_changelist")


def change_url(row: Schedule) -> str:
    return reverse("admin:repid_django_schedule_change", args=(row.pk,))


def run_now_url(row: Schedule) -> str:
    return reverse("admin:repid_django_schedule_run_now", args=(row.pk,))


def user_with(client: Client, django_user_model: Any, *codenames: str) -> Client:
    user = django_user_model.objects.create_user("ops", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="repid_django", codename__in=codenames)
    )
    client.force_login(user)
    return client


@pytest.fixture
def editor(client: Client, django_user_model: Any) -> Client:
    return user_with(
        client,
        django_user_model,
        "view_schedule",
        "add_schedule",
        "change_schedule",
        "delete_schedule",
        "view_jobrecord",
    )


@pytest.fixture
def viewer(client: Client, django_user_model: Any) -> Client:
    return user_with(client, django_user_model, "view_schedule", "view_jobrecord")


def form(**values: Any) -> dict[str, Any]:
    base = {
        "name": "pulse",
        "actor": "record",
        "cron": "",
        "every": "60",
        "tz": "",
        "args": '{"tag": "pulse"}',
        "queue": "default",
        "priority": "0",
        "enabled": "on",
        "missed": "once",
    }
    return {**base, **values}


def errors_of(answer: Any) -> dict[str, list[str]]:
    assert answer.status_code == 200, "the form was accepted"
    found = answer.context["adminform"].form.errors
    return {field: [str(e) for e in errs] for field, errs in found.items()}


def fire(row: Schedule, tick: float) -> None:
    """What a worker does at a tick: record it and enqueue its job (one script)."""
    schedule = row.to_schedule()
    connection = get_connection()

    async def work(broker: MessageBroker) -> bool:
        return await broker.fire(row.queue, row.name, tick, tick_message(schedule, tick))

    assert connection.call(lambda: work(connection.message_broker), timeout=5)


# ---------------------------------------------------------------------------------- forms


def test_adding_a_schedule_through_the_admin(editor: Client) -> None:
    answer = editor.post(ADD, form(cron="*/5 * * * *", every="", tz="Europe/Paris"))
    assert answer.status_code == 302, errors_of(answer)
    row = Schedule.objects.get(name="pulse")
    assert (row.source, row.cron, row.every, row.tz, row.args) == (
        "admin",
        "*/5 * * * *",
        None,
        "Europe/Paris",
        {"tag": "pulse"},
    )
    page = editor.get(change_url(row)).content.decode()
    assert page.count("<li>20") == 5  # the next five runs, in the schedule's zone
    assert "CET" in page or "CEST" in page
    assert '<select name="actor"' in page
    assert '<datalist id="repid-time-zones">' in page


@pytest.mark.parametrize(
    ("values", "field", "expected"),
    [
        ({"cron": "0 3 * *", "every": ""}, "cron", "expected 5 fields"),
        ({"cron": "0 3 * * *"}, "cron", "not both"),
        ({"every": ""}, "cron", "give a cron expression or an interval"),
        ({"every": "0.5"}, "every", "at least 1 second"),
        ({"tz": "Europe/Pariss", "cron": "0 3 * * *", "every": ""}, "tz", "unknown time zone"),
        ({"args": "{tag: pulse}"}, "args", "Enter a valid JSON"),
        ({"args": '"pulse"'}, "args", "args must be a dict"),
        ({"actor": "reprot"}, "actor", "Select a valid choice"),
        ({"queue": "two words"}, "queue", "queue"),
        ({"name": "no spaces please"}, "name", "invalid schedule name"),
    ],
)
def test_each_problem_is_reported_on_its_field_and_nothing_is_saved(
    editor: Client, values: dict[str, str], field: str, expected: str
) -> None:
    errors = errors_of(editor.post(ADD, form(**values)))
    assert list(errors) == [field], errors
    assert expected in errors[field][0]
    assert not Schedule.objects.exists()


def test_an_admin_schedule_whose_actor_is_gone_must_be_given_a_known_one(editor: Client) -> None:
    row = Schedule.objects.create(name="old", actor="retired", every=60)
    page = editor.get(change_url(row)).content.decode()
    assert "retired (no installed app declares it)" in page
    errors = errors_of(editor.post(change_url(row), form(name="old", actor="retired")))
    assert "unknown actor 'retired'" in errors["actor"][0]
    answer = editor.post(change_url(row), form(name="old", actor="noop", every="30"))
    assert answer.status_code == 302
    row.refresh_from_db()
    assert (row.actor, row.every) == ("noop", 30.0)


def test_declared_schedules_are_read_only_but_for_enabled(editor: Client) -> None:
    row = Schedule.objects.create(
        name="nightly", actor="record", cron="0 3 * * *", source="settings"
    )
    page = editor.get(change_url(row)).content.decode()
    assert 'name="cron"' not in page
    assert 'name="enabled"' in page
    answer = editor.post(change_url(row), {"cron": "* * * * *", "actor": "noop"})  # unchecked
    assert answer.status_code == 302
    row.refresh_from_db()
    assert (row.cron, row.actor, row.enabled) == ("0 3 * * *", "record", False)
    delete = reverse("admin:repid_django_schedule_delete", args=(row.pk,))
    assert editor.post(delete, {"post": "yes"}).status_code == 403
    assert Schedule.objects.filter(pk=row.pk).exists()


def test_the_admin_works_without_use_tz(editor: Client) -> None:
    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        answer = editor.post(ADD, form(cron="30 2 * * *", every=""))
        assert answer.status_code == 302, errors_of(answer)
        row = Schedule.objects.get(name="pulse")
        page = editor.get(change_url(row)).content.decode()
        shown = re.findall(r"<li>\d{4}-\d\d-\d\d (\d\d:\d\d):00 E[SD]T</li>", page)
        assert len(shown) == 5  # in New York time
        assert set(shown) <= {"02:30", "03:00"}  # 03:00 on a spring-forward day
        assert editor.get(CHANGELIST).status_code == 200


# -------------------------------------------------------------------------------- run now


def test_run_now_enqueues_one_job_with_the_schedules_values(editor: Client) -> None:
    row = Schedule.objects.create(
        name="pulse", actor="record", every=3600, args={"tag": "now"}, queue="other", priority=50
    )
    assert editor.get(run_now_url(row)).status_code == 405
    assert Queue("other").stats().value.ready == 0
    page = editor.get(change_url(row)).content.decode()
    assert run_now_url(row) in page
    answer = editor.post(run_now_url(row), follow=True)
    assert answer.status_code == 200
    record = JobRecord.objects.get(job_id__startswith="sched:pulse:now-")
    link = reverse("admin:repid_django_jobrecord_change", args=(record.pk,))
    assert f'enqueued job <a href="{link}">{record.job_id}</a>' in answer.content.decode()
    assert (record.actor, record.queue, record.priority, record.args) == (
        "record",
        "other",
        50,
        {"tag": "now"},
    )
    assert Queue("other").stats().value.ready == 1


def test_run_now_needs_the_change_permission(viewer: Client) -> None:
    row = Schedule.objects.create(name="pulse", actor="record", every=3600)
    assert viewer.post(run_now_url(row)).status_code == 403
    assert run_now_url(row) not in viewer.get(change_url(row)).content.decode()
    answer = viewer.post(CHANGELIST, {"action": "run_selected_now", "_selected_action": [row.pk]})
    assert answer.status_code in (200, 302)  # an action it does not have: nothing runs
    assert Queue("default").stats().value.ready == 0
    assert not JobRecord.objects.exists()


def test_run_selected_now_action(editor: Client) -> None:
    rows = [Schedule.objects.create(name=f"s{i}", actor="noop", every=3600) for i in range(2)]
    answer = editor.post(
        CHANGELIST, {"action": "run_selected_now", "_selected_action": [r.pk for r in rows]}
    )
    assert answer.status_code == 302
    assert Queue("default").stats().value.ready == 2


# ------------------------------------------------------------------------ runs on show


def test_last_run_is_read_live_and_linked_to_its_job_record(editor: Client) -> None:
    row = Schedule.objects.create(name="pulse", actor="record", every=60)
    assert "not yet" in editor.get(change_url(row)).content.decode()
    tick = (time.time() // 60) * 60
    fire(row, tick)
    job_id = tick_id("pulse", tick)
    page = editor.get(change_url(row)).content.decode()
    assert job_id in page
    record = JobRecord.objects.create(job_id=job_id, actor="record", queue="default")
    page = editor.get(change_url(row)).content.decode()
    link = reverse("admin:repid_django_jobrecord_change", args=(record.pk,))
    assert f'<a href="{link}">{job_id}</a>' in page
    assert job_id in editor.get(CHANGELIST).content.decode()


def test_deleting_a_schedule_forgets_its_marks_and_only_jobs_are_runs(editor: Client) -> None:
    row = Schedule.objects.create(name="pulse", actor="record", every=60)
    connection = get_connection()
    broker = connection.message_broker
    tick = (time.time() // 60) * 60

    def marks() -> tuple[dict[str, float], dict[str, float]]:
        async def work() -> tuple[dict[str, float], dict[str, float]]:
            return (
                await broker.schedule_marks("default", ["pulse"]),
                await broker.schedule_runs("default", ["pulse"]),
            )

        return connection.call(work, timeout=5)

    async def mark_only() -> bool:
        return await broker.fire("default", "pulse", tick + 60, None)

    fire(row, tick)
    connection.call(mark_only, timeout=5)  # a tick handled without a job (disabled)
    assert marks() == ({"pulse": tick + 60}, {"pulse": tick})
    assert tick_id("pulse", tick) in editor.get(change_url(row)).content.decode()
    answer = editor.post(
        reverse("admin:repid_django_schedule_delete", args=(row.pk,)), {"post": "yes"}
    )
    assert answer.status_code == 302
    assert not Schedule.objects.filter(name="pulse").exists()
    assert marks() == ({}, {})  # made again later, it starts afresh: no catch-up


def test_the_changelist_syncs_settings_schedules(editor: Client, settings: Any) -> None:
    settings.REPID = {
        **settings.REPID,
        "SCHEDULES": {"nightly": {"actor": "record", "cron": "0 3 * * *", "tz": "Asia/Tokyo"}},
    }
    page = editor.get(CHANGELIST).content.decode()
    assert "nightly" in page
    assert "cron 0 3 * * * (Asia/Tokyo)" in page
    assert "03:00:00 JST" in page
    assert Schedule.objects.get(name="nightly").source == "settings"


def test_dashboard_and_monitor_show_next_and_last_runs(editor: Client) -> None:
    row = Schedule.objects.create(name="pulse", actor="record", every=60)
    Schedule.objects.create(name="paused", actor="record", every=60, enabled=False)
    tick = (time.time() // 60) * 60
    fire(row, tick)
    html = editor.get(reverse("admin:app_list", args=("repid_django",))).content.decode()
    panel = html.split('id="repid-schedules"', 1)[1]
    pulse = panel.split('data-schedule="pulse"', 1)[1].split("</tr>", 1)[0]
    assert tick_id("pulse", tick) in pulse
    assert "every 1 min" in pulse
    paused = panel.split('data-schedule="paused"', 1)[1].split("</tr>", 1)[0]
    assert "disabled" in paused
    snapshot = build_snapshot()
    json.dumps(snapshot)  # JSON all the way
    found = {item["name"]: item for item in snapshot["schedules"]}
    assert found["pulse"]["last_job_id"] == tick_id("pulse", tick)
    assert found["pulse"]["next_run"] is not None
    assert found["paused"]["next_run"] is None


def test_job_cron_schedules_show_as_code_schedules(editor: Client) -> None:
    from repid_django import Job

    connection = get_connection()
    assert Job("record", id_="kept", cron="*/5 * * * *", connection=connection).enqueue().value
    page = editor.get(CHANGELIST).content.decode()
    assert "kept" in page
    row = Schedule.objects.get(name="kept")
    assert (row.source, row.cron, row.actor) == ("code", "*/5 * * * *", "record")
    broker = connection.message_broker
    assert connection.call(lambda: broker.remove_schedule("kept"), timeout=5)
    editor.get(CHANGELIST)
    assert not Schedule.objects.filter(name="kept").exists()
