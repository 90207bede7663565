"""Gauges read at scrape time: queue depths from Redis, workers alive from their heartbeats.

Nothing is kept between scrapes, so every scrape target shows the same fleet-wide numbers
(aggregate them with ``max``, never ``sum``). The depths are one call to the broker (every
declared queue's counts, at most :data:`~.labels.MAX_QUEUES` queues), bounded by a timeout;
when Redis does not answer, ``repid_broker_up`` is 0 and the depths are left out. Workers alive
counts the worker rows of the ORM mirror with a heartbeat within ``LEASE_TTL`` (30 s at least)
that did not stop, as the admin and the monitor do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .labels import MAX_QUEUES

logger = logging.getLogger("repid_django.metrics")

DEPTHS = (
    ("ready", "Jobs waiting to run now."),
    ("delayed", "Jobs waiting for a later time (deferred, retries, recurring)."),
    ("running", "Jobs claimed by a worker (leased)."),
    ("dead", "Dead letters kept for the queue."),
)


class LiveCollector(Collector):
    """Yields the live gauges (see the module docstring) at every ``collect()``.

    ``close_db``: close this thread's database connections afterwards (for a thread that is
    not a Django request, such as the worker's metrics server).
    """

    def __init__(self, timeout: float = 2.0, *, close_db: bool = False) -> None:
        self.timeout = timeout
        self.close_db = close_db

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # nothing is read when the collector is registered

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._depths()
        alive = self._workers_alive()
        if alive is not None:
            family = GaugeMetricFamily(
                "repid_workers_alive",
                "Workers whose heartbeat is recent (within LEASE_TTL, 30 s at least) and that "
                "did not stop, from the ORM mirror.",
            )
            family.add_metric([], alive)
            yield family

    def _depths(self) -> Iterator[GaugeMetricFamily]:
        from ..depths import read_stats

        up = GaugeMetricFamily(
            "repid_broker_up", "1 when Redis answered this scrape's read of the queue depths."
        )
        try:
            stats = read_stats(None, self.timeout)
        except Exception as exc:  # an unreachable Redis is a 0, never a failed scrape
            logger.warning("metrics: queue depths unavailable: %s: %s", type(exc).__name__, exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        names = sorted(stats)[:MAX_QUEUES]
        for state, text in DEPTHS:
            family = GaugeMetricFamily(f"repid_queue_{state}", text, labels=["queue"])
            for name in names:
                family.add_metric([name], getattr(stats[name], state))
            yield family
        paused = GaugeMetricFamily(
            "repid_queue_paused",
            "1 when the queue is paused (workers start none of its jobs).",
            labels=["queue"],
        )
        for name in names:
            paused.add_metric([name], 1 if stats[name].paused else 0)
        yield paused

    def _workers_alive(self) -> int | None:
        from django.db import connections
        from django.utils import timezone

        from ..conf import get_settings
        from ..models import WorkerRecord

        try:
            within = max(30.0, get_settings().lease_ttl)  # as admin.filters.alive_within
            since = timezone.now() - timedelta(seconds=within)
            return (
                WorkerRecord.objects.filter(last_heartbeat__gte=since)
                .exclude(state="stopped")
                .count()
            )
        except Exception as exc:  # no table yet, database down: left out of the scrape
            logger.warning("metrics: workers alive unavailable: %s: %s", type(exc).__name__, exc)
            return None
        finally:
            if self.close_db:
                connections.close_all()
