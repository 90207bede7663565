"""The admin's operation views: where they send the user back to, and what they say when the
broker does not finish an operation in time."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from repid_django import get_connection, ops

from .test_admin import login

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

PURGE = reverse("admin:repid_django_queuerecord_purge", args=("default",))
CHANGELIST = reverse("admin:repid_django_queuerecord_changelist")


@pytest.fixture
def manager(client: Client, django_user_model: Any) -> Client:
    login(client, django_user_model, manage=True)
    return client


@pytest.mark.parametrize(
    "target", ["/\\evil.com", "//evil.com", "https://evil.com", "http://evil.com/admin/"]
)
def test_next_to_another_site_is_refused(manager: Client, target: str) -> None:
    answer = manager.post(PURGE, {"confirm": "yes", "next": target})
    assert answer.status_code == 302
    assert answer["Location"] == CHANGELIST


def test_the_confirmation_page_does_not_carry_a_foreign_next(manager: Client) -> None:
    page = manager.post(PURGE, {"next": "//evil.com"}).content.decode()
    assert "evil.com" not in page


def test_next_to_a_local_path_is_followed(manager: Client) -> None:
    answer = manager.post(PURGE, {"confirm": "yes", "next": "/admin/repid_django/?q=1"})
    assert answer.status_code == 302
    assert answer["Location"] == "/admin/repid_django/?q=1"


def test_a_timed_out_operation_may_still_complete(
    manager: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = get_connection().message_broker
    finished = threading.Event()

    async def slow_flush(name: str) -> int:
        await asyncio.sleep(0.3)
        finished.set()
        return 0

    monkeypatch.setattr(broker, "flush_queue", slow_flush)
    monkeypatch.setattr(ops, "OPERATION_TIMEOUT", 0.05)
    page = manager.post(PURGE, {"confirm": "yes"}, follow=True).content.decode()
    assert "did not finish within 0.05s and may still complete" in page
    assert "check the queue before trying again" in page
    assert "nothing was changed" not in page
    assert finished.wait(5), "the operation went on in the background and completed"


def test_an_unreachable_broker_changed_nothing() -> None:
    async def unreachable(broker: object) -> None:
        raise ConnectionError("refused")

    with pytest.raises(ops.BrokerUnavailable, match="nothing was changed") as caught:
        ops._run(unreachable)
    assert not isinstance(caught.value, ops.OperationTimedOut)
