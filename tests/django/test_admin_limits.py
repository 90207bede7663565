"""Queue and actor limits in the admin and the monitor, against a real Redis: the limits in
force on every page that shows a queue and in the monitor's snapshot; the queue's limits form
(POST only, permission checked, validated, nothing half-applied); queues whose limits come from
``REPID["QUEUE_LIMITS"]`` are read-only."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from repid_django import conf, get_connection
from repid_django.engine.limits import Limits, parse_rate
from repid_django.models import QueueRecord
from repid_django.monitor.snapshot import build_snapshot

from .test_admin import login, op_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

DASHBOARD = reverse("admin:app_list", args=("repid_django",))
QUEUES = reverse("admin:repid_django_queuerecord_changelist")


def limits_of(queue: str) -> dict[str | None, Limits]:
    connection = get_connection()
    return connection.call(lambda: connection.message_broker.get_limits(queue), 5)


def set_limits(queue: str, limits: dict[str | None, Limits]) -> None:
    connection = get_connection()
    connection.call(lambda: connection.message_broker.set_limits(queue, limits), 5)


def queue_limits(queue: str) -> tuple[int | None, tuple[int, int] | None]:
    """The queue's own concurrency and rate (as ``(count, window_ms)``)."""
    own = limits_of(queue).get(None)
    if own is None:
        return None, None
    return own.concurrency, None if own.rate is None else parse_rate(own.rate)


def messages_of(answer: Any) -> list[str]:
    return [str(m) for m in answer.context["messages"]]


@pytest.fixture
def emails() -> QueueRecord:
    return QueueRecord.objects.create(name="emails")


@pytest.fixture
def manager(client: Client, django_user_model: Any) -> Client:
    login(client, django_user_model, manage=True)
    return client


def change_url(record: QueueRecord) -> str:
    return reverse("admin:repid_django_queuerecord_change", args=(record.pk,))


def test_the_limits_in_force_show_on_every_page_that_shows_the_queue(
    manager: Client, emails: QueueRecord
) -> None:
    set_limits(
        "emails",
        {
            None: Limits(concurrency=5, rate="100/m"),
            "send_mail": Limits(rate="20/s", rate_key="customer_id"),
            "render": Limits(concurrency=2),
        },
    )
    page = manager.get(change_url(emails)).content.decode()
    assert "queue: 5 at once, 100/m" in page
    assert "send_mail: 20/s per customer_id" in page
    assert "render: 2 at once" in page
    assert 'value="100/m"' in page  # the form starts from the limits in force
    listing = manager.get(QUEUES).content.decode()
    assert "queue: 5 at once, 100/m" in listing
    assert "render: 2 at once" in listing
    dashboard = manager.get(DASHBOARD).content.decode()
    row = dashboard.split('data-queue="emails"', 1)[1].split("</tr>", 1)[0]
    assert "queue: 5 at once, 100/m" in row
    assert "send_mail: 20/s per customer_id" in row


def test_the_monitor_snapshot_contains_the_limits(emails: QueueRecord) -> None:
    set_limits("emails", {None: Limits(concurrency=3), "render": Limits(rate="5/10s")})
    snapshot = build_snapshot()
    row = next(q for q in snapshot["queues"] if q["name"] == "emails")
    assert row["limits"] == {
        "queue": {"concurrency": 3, "rate": None, "rate_key": None},
        "actors": {"render": {"concurrency": None, "rate": "5/10s", "rate_key": None}},
    }


def test_limits_are_unknown_when_redis_does_not_answer(
    manager: Client, emails: QueueRecord, settings: Any
) -> None:
    from tests.redis_server import free_port

    settings.REPID = {**settings.REPID, "BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    snapshot = build_snapshot(timeout=1.0)
    assert next(q for q in snapshot["queues"] if q["name"] == "emails")["limits"] is None
    listing = manager.get(QUEUES).content.decode()
    assert "unknown" in listing.split('class="field-limits"', 1)[1].split("</td>", 1)[0]


def test_a_manager_sets_the_queues_limits_with_the_form(
    manager: Client, emails: QueueRecord
) -> None:
    url = op_url("queuerecord", "limits", "emails")
    answer = manager.post(url, {"concurrency": "5", "rate": "100/m"}, follow=True)
    assert answer.redirect_chain[-1][0] == change_url(emails)
    assert queue_limits("emails") == (5, (100, 60_000))
    assert any("limited to 5 at once, 100/m" in text for text in messages_of(answer))

    manager.post(url, {"concurrency": "", "rate": "5/10s"})
    assert queue_limits("emails") == (None, (5, 10_000))
    manager.post(url, {"concurrency": "", "rate": ""})  # both empty: no limit of its own
    assert queue_limits("emails") == (None, None)


@pytest.mark.parametrize(
    "data",
    [
        {"concurrency": "7", "rate": "lots"},
        {"concurrency": "7", "rate": "0/m"},
        {"concurrency": "0", "rate": "10/s"},
        {"concurrency": "many", "rate": "10/s"},
    ],
)
def test_bad_input_is_refused_with_a_clear_error_and_changes_nothing(
    manager: Client, emails: QueueRecord, data: dict[str, str]
) -> None:
    set_limits("emails", {None: Limits(concurrency=3, rate="9/s")})
    answer = manager.post(op_url("queuerecord", "limits", "emails"), data, follow=True)
    assert queue_limits("emails") == (3, (9, 1000))  # nothing half-applied
    errors = [text for text in messages_of(answer) if text.startswith("Limits not changed")]
    assert errors, messages_of(answer)
    assert ("rate" in errors[0]) or ("concurrency" in errors[0])


def test_viewers_get_403_get_requests_405_and_nothing_changes(
    client: Client, django_user_model: Any, emails: QueueRecord
) -> None:
    url = op_url("queuerecord", "limits", "emails")
    login(client, django_user_model, manage=False)
    assert client.post(url, {"concurrency": "1"}).status_code == 403
    assert "Save limits" not in client.get(change_url(emails)).content.decode()
    assert queue_limits("emails") == (None, None)
    client.logout()
    login(client, django_user_model, manage=True, name="boss")
    assert client.get(url, {"concurrency": "1"}).status_code == 405
    assert queue_limits("emails") == (None, None)
    assert "Save limits" in client.get(change_url(emails)).content.decode()


def test_queues_limited_in_the_settings_are_read_only(
    manager: Client,
    emails: QueueRecord,
    repid_settings: dict[str, Any],
    settings: Any,
) -> None:
    settings.REPID = {**repid_settings, "QUEUE_LIMITS": {"emails": {"concurrency": 4}}}
    conf.reset()
    set_limits("emails", {None: Limits(concurrency=4)})  # as runworker sets them
    page = manager.get(change_url(emails)).content.decode()
    assert "REPID[&quot;QUEUE_LIMITS&quot;]" in page or 'REPID["QUEUE_LIMITS"]' in page
    assert "runworker" in page
    assert "Save limits" not in page
    answer = manager.post(
        op_url("queuerecord", "limits", "emails"), {"concurrency": "9"}, follow=True
    )
    assert queue_limits("emails") == (4, None)
    assert any("QUEUE_LIMITS" in text for text in messages_of(answer))
