"""Prometheus metrics of a real worker (the Django worker on its own event loop in this
process, with the ORM mirror) against a real redis-server, read through the metrics view and
parsed with ``prometheus_client``'s parser.

A known mix: 3 jobs succeed, 2 fail once then succeed on their retry, 1 fails for good (dead
letter), 1 is cancelled while it runs. Counters are process-wide, so the test compares a scrape
taken before with one taken after (its actors' names are its own).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

import pytest
from django.test import Client

from repid_django import Job, Queue, ops
from repid_django.engine.worker.worker import Worker

from . import metrics_actors, workers
from .scrape import Samples, delta, parse, value
from .workers import wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.redis,
    pytest.mark.urls("tests.django.metrics_urls"),
]


def running_worker() -> AbstractContextManager[Worker]:
    return workers.running_worker(
        router=metrics_actors.router, queues=["default"], heartbeat_interval=0.5
    )


@pytest.fixture
def staff(client: Client, django_user_model: Any) -> Client:
    user = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(user)
    return client


def scrape(client: Client) -> Samples:
    response = client.get("/metrics/")
    assert response.status_code == 200, response.content[:300]
    return parse(response.content.decode())[0]


def test_a_known_mix_of_outcomes_is_counted_exactly(staff: Client) -> None:
    metrics_actors.ATTEMPTS.clear()
    metrics_actors.EVENTS.clear()
    Queue("default").declare()
    before = scrape(staff)
    for n in range(3):
        Job("m_ok", args={"n": n}).enqueue()
    for key in ("a", "b"):
        Job("m_flaky", args={"key": key}, retries=1).enqueue()
    Job("m_boom").enqueue()
    hang_id = Job("m_hang", args={"tag": "h"}).enqueue().value

    with running_worker():
        wait_for(lambda: metrics_actors.EVENTS.get("h started"), 10, "m_hang to start")
        assert ops.cancel_job("default", hang_id) == "stopping"

        def settled() -> Samples | None:
            now = scrape(staff)
            done = (
                delta(now, before, "repid_jobs_succeeded_total", actor="m_flaky", queue="default")
                == 2
                and delta(
                    now, before, "repid_jobs_cancelled_total", actor="m_hang", queue="default"
                )
                == 1
                and delta(
                    now,
                    before,
                    "repid_jobs_dead_total",
                    actor="m_boom",
                    queue="default",
                    reason="failed",
                )
                == 1
                and value(now, "repid_workers_alive") >= 1
            )
            return now if done else None

        live = wait_for(settled, 15, "every outcome to be counted")
    after = scrape(staff)  # the worker stopped: its last events are in

    def d(name: str, actor: str, **labels: str) -> float:
        return delta(after, before, name, actor=actor, queue="default", **labels)

    expected = {
        # name: (m_ok, m_flaky, m_boom, m_hang)
        "repid_jobs_enqueued_total": (3, 2, 1, 1),
        "repid_jobs_started_total": (3, 4, 1, 1),
        "repid_jobs_succeeded_total": (3, 2, 0, 0),
        "repid_jobs_failed_total": (0, 2, 1, 0),
        "repid_jobs_retried_total": (0, 2, 0, 0),
        "repid_jobs_cancelled_total": (0, 0, 0, 1),
        "repid_jobs_lease_lost_total": (0, 0, 0, 0),
        "repid_job_run_seconds_count": (3, 4, 1, 0),
        "repid_job_wait_seconds_count": (3, 4, 1, 1),
    }
    actors = ("m_ok", "m_flaky", "m_boom", "m_hang")
    found = {name: tuple(d(name, actor) for actor in actors) for name in expected}
    assert found == expected
    dead = {
        (actor, reason): d("repid_jobs_dead_total", actor, reason=reason)
        for actor in actors
        for reason in ("failed", "timeout", "cancelled")
    }
    assert {key: count for key, count in dead.items() if count} == {("m_boom", "failed"): 1}
    # Every run took less than a second (their exact times: test_metrics_units.py).
    for actor, runs in (("m_ok", 3), ("m_flaky", 4), ("m_boom", 1)):
        assert d("repid_job_run_seconds_bucket", actor, le="1.0") == runs

    # Live gauges, read from Redis at scrape time (this test's prefix: only its queue).
    assert value(live, "repid_broker_up") == 1
    assert value(after, "repid_queue_ready", queue="default") == 0
    assert value(after, "repid_queue_running", queue="default") == 0
    assert value(after, "repid_queue_dead", queue="default") == 2  # m_boom and m_hang
    assert value(after, "repid_queue_paused", queue="default") == 0
    assert value(live, "repid_worker_heartbeat_timestamp_seconds") > time.time() - 10


def test_unknown_actor_names_share_one_label(staff: Client) -> None:
    """A worker counts the actors it runs by name, and any other name as ``_other``."""
    from repid_django.engine.message import Message
    from repid_django.engine.worker.events import EventKind, JobEvent
    from repid_django.metrics.listener import MetricsListener

    listener = MetricsListener(actors=["m_ok"])
    before = scrape(staff)
    events = [
        JobEvent(EventKind.STARTED, Message(id=f"i{n}", actor=name, queue="default"), 1.0, "w")
        for n, name in enumerate(["m_ok", "spam-1", "spam-2", "spam-3"])
    ]
    listener.record(events)
    after = scrape(staff)
    started = "repid_jobs_started_total"
    assert delta(after, before, started, actor="m_ok", queue="default") == 1
    assert delta(after, before, started, actor="_other", queue="default") == 3
    assert not any(dict(labels).get("actor", "").startswith("spam") for _, labels in after)
