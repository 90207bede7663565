"""Enqueueing from sync and async views, and enqueue-on-commit."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import transaction
from django.test import AsyncClient, Client

from repid_django import Connection, Job, Queue, get_connection
from repid_django.engine.message import Message
from repid_django.shortcuts import enqueue_on_commit
from tests.django.testapp import tasks


def waiting(queue: str = "default") -> list[Message]:
    connection = get_connection()
    return connection.call(lambda: connection.message_broker.list_messages(queue))


def portal_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "repid-portal")


def test_sync_view_enqueues_over_one_pooled_connection(client: Client) -> None:
    ids = [client.get("/enqueue/sync/").json()["id"] for _ in range(5)]
    assert [m.id for m in waiting()] == ids
    assert all(m.actor == "record" and m.args == {"tag": "sync"} for m in waiting())
    # One connection and one background loop for the process, not one per call.
    assert portal_threads() == 1
    connection = get_connection()
    assert client.get("/enqueue/sync/").status_code == 200
    assert get_connection() is connection
    assert portal_threads() == 1


async def test_async_view_enqueues(async_client: AsyncClient, aconnection: Connection) -> None:
    response = await async_client.get("/enqueue/async/?queue=other")
    message_id = response.json()["id"]
    messages = await get_connection().message_broker.list_messages("other")
    assert [(m.id, m.args) for m in messages] == [(message_id, {"tag": "async"})]
    assert await Queue("default").stats() is not None


async def test_actor_helper_in_async_code(aconnection: Connection) -> None:
    message_id = await tasks.add.aenqueue(4, 5)
    same = await tasks.add.enqueue(a=1, b=1)
    messages = await get_connection().message_broker.list_messages("default")
    assert {m.id for m in messages} == {message_id, same}


@pytest.mark.django_db(transaction=True)
def test_view_enqueues_only_after_commit(client: Client) -> None:
    response = client.get("/enqueue/on-commit/")
    assert response.status_code == 200
    assert [m.id for m in waiting()] == [response.json()["id"]]


@pytest.mark.django_db(transaction=True)
def test_view_rolled_back_enqueues_nothing(client: Client) -> None:
    response = client.get("/enqueue/on-commit/?fail=1")
    assert response.status_code == 409
    assert waiting() == []


@pytest.mark.django_db(transaction=True)
def test_nothing_is_sent_before_the_commit() -> None:
    job = Job("record", args={"tag": "later"})
    with transaction.atomic():
        enqueue_on_commit(job)
        tasks.add.enqueue_on_commit(1, 2)
        assert waiting() == []
    assert sorted(m.actor for m in waiting()) == ["add", "record"]


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_on_commit_follows_the_given_database_alias() -> None:
    with transaction.atomic(using="other"):
        with transaction.atomic(using="default"):
            tasks.add.job(using="other").enqueue_on_commit(1, 2)
        # "default" committed, but the job waits for the transaction on "other".
        assert waiting() == []
    assert [m.actor for m in waiting()] == ["add"]


@pytest.mark.django_db(transaction=True)
def test_inner_rollback_drops_the_job() -> None:
    with transaction.atomic():
        try:
            with transaction.atomic():
                enqueue_on_commit(Job("record", args={"tag": "inner"}))
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        enqueue_on_commit(Job("record", args={"tag": "outer"}))
    assert [m.args for m in waiting()] == [{"tag": "outer"}]


@pytest.mark.django_db(transaction=True)
def test_on_commit_checks_arguments_at_once() -> None:
    with transaction.atomic(), pytest.raises(TypeError, match="not JSON"):
        enqueue_on_commit(Job("record", args={"tag": {1, 2}}))


def test_enqueue_outside_a_transaction_is_immediate(transactional_db: Any) -> None:
    enqueue_on_commit(Job("record", args={"tag": "now"}))
    assert len(waiting()) == 1
