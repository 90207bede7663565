"""Units of the metrics package: batched histogram updates, label caps, address parsing."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest

from repid_django.engine.brokers.base import DeadReason
from repid_django.engine.message import Message
from repid_django.engine.results import JobResult, stamp
from repid_django.engine.worker.events import EventKind, JobEvent
from repid_django.metrics.definitions import BUCKETS
from repid_django.metrics.labels import OTHER, LabelCap
from repid_django.metrics.listener import MetricsListener, observe_many
from repid_django.metrics.server import parse_address


def test_observe_many_equals_observing_one_by_one() -> None:
    """It reaches into prometheus_client's histogram: this fails if those insides change."""
    values = [0.0, 0.001, 0.005, 0.0050001, 0.3, 1.0, 59.9, 60.0, 61.0, 1800.0, 1e9, 0.3]
    one, many = CollectorRegistry(), CollectorRegistry()
    by_one = Histogram("h", "doc", ["a"], buckets=BUCKETS, registry=one).labels("x")
    by_many = Histogram("h", "doc", ["a"], buckets=BUCKETS, registry=many).labels("x")
    for value in values:
        by_one.observe(value)
    observe_many(by_many, values)

    def text(registry: CollectorRegistry) -> list[bytes]:
        lines = generate_latest(registry).splitlines()
        return [line for line in lines if b"_created" not in line and b"_sum" not in line]

    assert text(many) == text(one)
    assert many.get_sample_value("h_sum", {"a": "x"}) == pytest.approx(sum(values))
    assert one.get_sample_value("h_sum", {"a": "x"}) == pytest.approx(sum(values))
    assert b'h_bucket{a="x",le="0.005"} 3.0' in text(many)
    assert b'h_count{a="x"} 12.0' in text(many)


def sample(name: str, actor: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"actor": actor, "queue": "q", **labels}) or 0.0


def test_waiting_and_run_times_of_events() -> None:
    """Waiting: from the due time (run_at, else enqueued_at) to the start. Run: the result's
    duration when there is one, else from the start event to the outcome event."""
    actor = "u_times"
    fresh = Message(id="a", actor=actor, queue="q", enqueued_at=90.0)
    deferred = Message(id="b", actor=actor, queue="q", enqueued_at=90.0, run_at=97.5)
    early = Message(id="c", actor=actor, queue="q", enqueued_at=90.0, run_at=10.0)
    result = JobResult("b", actor, True, None, None, stamp(100.0), stamp(100.5))
    MetricsListener(actors=[actor]).record(
        [
            JobEvent(EventKind.STARTED, fresh, 100.0, "w"),
            JobEvent(EventKind.STARTED, deferred, 100.0, "w"),
            JobEvent(EventKind.STARTED, early, 100.0, "w"),
            JobEvent(EventKind.SUCCEEDED, fresh, 100.25, "w"),  # no result: by the events
            JobEvent(EventKind.SUCCEEDED, deferred, 109.0, "w", result=result),
            JobEvent(EventKind.DEAD, early, 101.0, "w", reason=DeadReason.CANCELLED),
        ]
    )
    assert sample("repid_job_wait_seconds_count", actor) == 3
    assert sample("repid_job_wait_seconds_sum", actor) == 10.0 + 2.5 + 10.0
    assert sample("repid_job_run_seconds_count", actor) == 2  # a cancelled run is no run time
    assert sample("repid_job_run_seconds_sum", actor) == 0.25 + 0.5
    assert sample("repid_job_run_seconds_bucket", actor, le="0.25") == 1
    assert sample("repid_jobs_cancelled_total", actor) == 1


def test_label_caps() -> None:
    capped = LabelCap(2)
    assert [capped(n) for n in ("a", "b", "c", "a", "d")] == ["a", "b", OTHER, "a", OTHER]
    known = LabelCap(100, known=["run"])
    assert [known(n) for n in ("run", "spam", "eggs")] == ["run", OTHER, OTHER]


@pytest.mark.parametrize(
    ("spec", "address"),
    [
        ("9100", ("0.0.0.0", 9100)),
        (9100, ("0.0.0.0", 9100)),
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("[::1]:0", ("::1", 0)),
        (":9100", ("0.0.0.0", 9100)),
    ],
)
def test_metrics_addresses(spec: str | int, address: tuple[str, int]) -> None:
    assert parse_address(spec) == address


@pytest.mark.parametrize("spec", ["nine", "70000", "host:", "-1"])
def test_bad_metrics_addresses(spec: str) -> None:
    with pytest.raises(CommandError, match="use PORT or HOST:PORT"):
        parse_address(spec)
