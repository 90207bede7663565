"""The worker side of the metrics: a :class:`~repid_django.engine.WorkerListener` that counts.

The worker hands its job events over in batches, off its processing path
(``engine/worker/emitter.py``); :meth:`MetricsListener.record` turns a batch into counter
increments (one per actor, queue and kind in the batch) and histogram observations (one
increment per bucket touched in the batch):

* ``STARTED``: started; the waiting time, from when the run was due (``run_at`` of a deferred
  or retried run, else ``enqueued_at``) to its start.
* ``SUCCEEDED``: succeeded; ``FAILED`` (a retry is scheduled): failed and retried; ``DEAD``:
  cancelled when its reason is ``cancelled``, else dead (by reason), and failed too when the run
  raised or timed out; ``LEASE_LOST``: lease lost.
* The run time of a succeeded or failed run: its result's when there is one, else from its
  ``STARTED`` event to its outcome (which adds the outcome's round trip to Redis, about a
  millisecond).

Dead letters that the broker makes by itself (a lost worker's job past ``MAX_LOST``, an
undecodable or expired message found at claim time) are no worker event: the dead-letter
queue's depth (``repid_queue_dead``) counts them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

from ..engine.brokers.base import DeadReason
from ..engine.worker.events import EventKind, JobEvent, WorkerInfo
from . import definitions as m
from .labels import MAX_ACTORS, MAX_QUEUES, LabelCap

MAX_TRACKED = 100_000
"""Started runs whose outcome is awaited, at most (a run whose events were dropped is
forgotten when the table is full)."""

_RAN = (DeadReason.FAILED, DeadReason.TIMEOUT)
"""Dead-letter reasons of a run that raised or timed out (a failed run)."""


class MetricsListener:
    """Counts a worker's job events into :mod:`.definitions` (see the module docstring).

    ``actors``: the names the worker runs; other names in messages (unknown actors, hostile
    bodies) are counted as ``_other``. ``None``: the first ``MAX_ACTORS`` names seen.
    """

    def __init__(self, actors: Iterable[str] | None = None) -> None:
        self._actor = LabelCap(MAX_ACTORS, actors)
        self._queue = LabelCap(MAX_QUEUES)
        self._started: dict[tuple[str, str], float] = {}
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, actor: str, queue: str, *extra: str) -> Any:
        key = (metric, actor, queue, *extra)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(self._actor(actor), self._queue(queue), *extra)
            if len(self._children) < 4 * MAX_ACTORS * MAX_QUEUES:
                self._children[key] = child
        return child

    async def on_events(self, events: Sequence[JobEvent]) -> None:
        self.record(events)

    async def on_heartbeat(self, info: WorkerInfo) -> None:
        m.HEARTBEAT.set(info.at)

    def record(self, events: Iterable[JobEvent]) -> None:
        """Count ``events``: one increment per counter and histogram bucket touched by the
        batch (see :func:`observe_many`), about a microsecond per event."""
        counts: dict[tuple[Any, ...], int] = {}
        waits: dict[tuple[str, str], list[float]] = {}
        runs: dict[tuple[str, str], list[float]] = {}
        started = self._started
        for event in events:
            message = event.message
            pair = (message.actor, message.queue)
            kind = event.kind
            if kind is EventKind.STARTED:
                due = message.enqueued_at
                if message.run_at is not None and message.run_at > due:
                    due = message.run_at
                waits.setdefault(pair, []).append(max(event.at - due, 0.0))
                if len(started) >= MAX_TRACKED:
                    started.clear()
                started[(message.queue, message.id)] = event.at
                continue
            began = started.pop((message.queue, message.id), None)
            ran = True
            if kind is EventKind.SUCCEEDED:
                keys: tuple[tuple[Any, ...], ...] = ((m.SUCCEEDED, *pair),)
            elif kind is EventKind.FAILED:
                keys = ((m.FAILED, *pair), (m.RETRIED, *pair))
            elif kind is EventKind.DEAD:
                reason = event.reason
                if reason is DeadReason.CANCELLED:
                    keys, ran = ((m.CANCELLED, *pair),), False
                else:
                    dead = (m.DEAD, *pair, str(reason or "other"))
                    ran = reason in _RAN
                    keys = (dead, (m.FAILED, *pair)) if ran else (dead,)
            elif kind is EventKind.LEASE_LOST:
                keys, ran = ((m.LEASE_LOST, *pair),), False
            else:  # REJECTED: back to the queue, not an outcome
                continue
            for key in keys:
                counts[key] = counts.get(key, 0) + 1
            if ran:
                result = event.result
                if result is not None:
                    runs.setdefault(pair, []).append(max(result.duration, 0.0))
                elif began is not None:
                    runs.setdefault(pair, []).append(max(event.at - began, 0.0))
        child = self._child
        for pair, values in waits.items():
            counts[(m.STARTED, *pair)] = len(values)
            observe_many(child(m.WAIT_SECONDS, *pair), values)
        for pair, values in runs.items():
            observe_many(child(m.RUN_SECONDS, *pair), values)
        for key, count in counts.items():
            child(*key).inc(count)


def observe_many(histogram: Any, values: Sequence[float]) -> None:
    """``histogram.observe(value)`` for every value, with one increment per bucket used and
    one for the sum (reaching into ``prometheus_client``'s histogram; when its insides are not
    the expected ones, value by value)."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    per_bucket: dict[int, int] = {}
    for value in values:
        index = bisect_left(bounds, value)  # the first bound >= value, as observe() finds
        per_bucket[index] = per_bucket.get(index, 0) + 1
    for index, count in per_bucket.items():
        buckets[index].inc(count)
    total.inc(sum(values))
