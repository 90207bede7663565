"""The worker side of the metrics: a :class:`~repid_django.engine.WorkerListener` that counts.

The worker hands its job events over in batches, off its processing path
(``engine/worker/emitter.py``); :meth:`MetricsListener.record` turns a batch into counter
increments (one per actor, queue and kind in the batch) and histogram observations:

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
        """Count ``events`` (synchronous: a batch costs a few microseconds per event)."""
        counts: dict[tuple[Any, ...], int] = {}
        started = self._started
        child = self._child
        for event in events:
            message = event.message
            actor, queue, kind = message.actor, message.queue, event.kind
            if kind is EventKind.STARTED:
                key: tuple[Any, ...] = (m.STARTED, actor, queue)
                counts[key] = counts.get(key, 0) + 1
                due = message.enqueued_at
                if message.run_at is not None and message.run_at > due:
                    due = message.run_at
                child(m.WAIT_SECONDS, actor, queue).observe(max(event.at - due, 0.0))
                if len(started) >= MAX_TRACKED:
                    started.clear()
                started[(queue, message.id)] = event.at
                continue
            began = started.pop((queue, message.id), None)
            ran = True
            if kind is EventKind.SUCCEEDED:
                keys: tuple[tuple[Any, ...], ...] = ((m.SUCCEEDED, actor, queue),)
            elif kind is EventKind.FAILED:
                keys = ((m.FAILED, actor, queue), (m.RETRIED, actor, queue))
            elif kind is EventKind.DEAD:
                reason = event.reason
                if reason is DeadReason.CANCELLED:
                    keys, ran = ((m.CANCELLED, actor, queue),), False
                else:
                    dead = (m.DEAD, actor, queue, str(reason or "other"))
                    ran = reason in _RAN
                    keys = (dead, (m.FAILED, actor, queue)) if ran else (dead,)
            elif kind is EventKind.LEASE_LOST:
                keys, ran = ((m.LEASE_LOST, actor, queue),), False
            else:  # REJECTED: back to the queue, not an outcome
                continue
            for key in keys:
                counts[key] = counts.get(key, 0) + 1
            if ran:
                result = event.result
                seconds = result.duration if result is not None else None
                if seconds is None and began is not None:
                    seconds = event.at - began
                if seconds is not None:
                    child(m.RUN_SECONDS, actor, queue).observe(max(seconds, 0.0))
        for key, count in counts.items():
            child(*key).inc(count)
