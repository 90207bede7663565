"""Recording outcomes: a worker's finished jobs go to the broker in batches.

Processing tasks append their :class:`Outcome` to a list; a background task sends what has
gathered in a very short window (or a full batch at once) with one ``broker.finish()`` call,
then counts (in the run's :class:`Counters`), reports lost leases, stores results kept apart
and emits events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..brokers.base import Outcome, OutcomeKind
from ..results import JobResult
from .counters import Counters
from .emitter import Emitter
from .events import EventKind
from .joblog import fields, log_outcome

if TYPE_CHECKING:
    from ..connection import Connection

logger = logging.getLogger("repid_django.worker")

CLOSING_TRIES = 3
"""Tries a closing worker gives a batch of outcomes before giving up on it."""
MAX_DELAY = 5.0
"""The longest wait between two tries of a batch."""

_EVENT_OF = {
    OutcomeKind.ACK: EventKind.SUCCEEDED,
    OutcomeKind.RETRY: EventKind.FAILED,
    OutcomeKind.DEAD: EventKind.DEAD,
    OutcomeKind.REJECT: EventKind.REJECTED,
}


class Recorder:
    """Sends outcomes in batches and counts them in ``counters``.

    ``busy`` tells whether more outcomes are on their way (jobs still run): then a batch waits
    ``window`` seconds to gather them. ``on_recorded`` is called after every batch (the run
    wakes its loop with it).
    """

    def __init__(
        self,
        counters: Counters,
        busy: Callable[[], bool],
        connection: Connection,
        emitter: Emitter | None,
        on_recorded: Callable[[], None],
        *,
        window: float,
        batch_max: int,
    ) -> None:
        self.pending: list[Outcome] = []
        self.finishing = False
        self.counters = counters
        self._busy = busy
        self._connection = connection
        self._broker = connection.message_broker
        self._apart = connection.results_apart
        self._emitter = emitter
        self._on_recorded = on_recorded
        self._window = window
        self._batch_max = batch_max
        self._event = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        return not (self.pending or self.finishing)

    def push(self, outcome: Outcome) -> None:
        self.pending.append(outcome)
        self._event.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="repid-finish")

    async def close(self) -> None:
        """Record everything still pending, then end the background task."""
        self._closing = True
        self._event.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        event = self._event
        while True:
            await event.wait()
            event.clear()
            if not self.pending:
                if self._closing:
                    return
                continue
            if (
                self._window > 0
                and len(self.pending) < self._batch_max
                and not self._closing
                and self._busy()
            ):
                # More outcomes are on their way: gather them into this batch. With nothing
                # else running (an idle worker), finish at once: no latency is added.
                await asyncio.sleep(self._window)
            batch, self.pending = self.pending, []
            self.finishing = True
            try:
                await self._record(batch)
            except Exception:
                logger.exception("recording %d job outcomes failed", len(batch))
            finally:
                self.finishing = False
                event.set()
                self._on_recorded()

    async def _record(self, batch: list[Outcome]) -> None:
        sent = batch
        if self._apart:
            sent = [dataclasses.replace(o, result=None) if o.result else o for o in batch]
        applied = await self._finish(sent)
        if applied is None:
            return
        counters = self.counters
        emitter = self._emitter
        results: list[tuple[JobResult, float | None]] = []
        for outcome, ok in zip(batch, applied, strict=True):
            kind = outcome.kind
            message = outcome.delivery.message
            if not ok:
                counters.lease_lost += 1
                logger.warning(
                    "lease lost for job %s (actor %r): the broker refused its %s; another "
                    "worker may run it again",
                    message.id,
                    message.actor,
                    kind.value,
                    extra=fields(message),
                )
                if emitter is not None:
                    emitter.job(EventKind.LEASE_LOST, message, result=outcome.result)
                continue
            counters.recorded(kind, outcome.reason)
            log_outcome(outcome)
            if outcome.result is not None and self._apart:
                results.append((outcome.result, message.result_ttl))
            if emitter is not None:
                emitter.job(
                    _EVENT_OF[kind],
                    message,
                    result=outcome.result,
                    error=outcome.error,
                    reason=outcome.reason,
                    retry_at=outcome.run_at if kind is OutcomeKind.RETRY else None,
                )
        if results and self._connection.results_broker is not None:
            try:
                await self._connection.results_broker.store_results(results)
            except Exception:
                logger.exception("could not store %d results in the results broker", len(results))

    async def _finish(self, batch: list[Outcome]) -> list[bool] | None:
        """``broker.finish(batch)``, tried again (with back-off) until it answers.

        Outcomes are kept until applied or refused: the broker holds their leases meanwhile,
        so an outage shorter than the lease makes no job run twice. Only a closing worker gives
        up, after :data:`CLOSING_TRIES`; those jobs then go back to their queue when their
        leases expire.
        """
        attempt = 0
        while True:
            try:
                return await self._broker.finish(batch)
            except Exception as exc:
                attempt += 1
                if self._closing and attempt >= CLOSING_TRIES:
                    break
                delay = min(0.1 * 2 ** (attempt - 1), MAX_DELAY)
                log = logger.warning if attempt > 1 else logger.exception
                log(
                    "recording %d job outcomes failed (try %d: %s); trying again in %.1fs",
                    len(batch),
                    attempt,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
        logger.error(
            "could not record %d job outcomes before stopping; the broker returns those jobs "
            "to their queue when their leases expire",
            len(batch),
        )
        return None
