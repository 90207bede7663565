"""The worker's event buffer: job events and heartbeats handed to listeners off the hot path.

The worker appends :class:`JobEvent` records (a list append, nothing awaited) and a background
task hands them to every :class:`WorkerListener` in batches, plus a :class:`WorkerInfo`
heartbeat every few seconds. A listener that raises is logged and never breaks the worker; a
listener that is too slow loses the oldest events once the buffer is full (counted in
``dropped``), never the jobs themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from ..brokers.base import DeadReason
from ..message import Message
from ..results import JobResult
from .events import EventKind, JobEvent, WorkerInfo, WorkerListener

logger = logging.getLogger("repid_django.worker.events")
_now = time.time
_STARTED = EventKind.STARTED


class Emitter:
    """Buffers events for ``listeners``; :meth:`start` and :meth:`stop` frame a worker run."""

    def __init__(
        self,
        listeners: Sequence[WorkerListener],
        worker_id: str,
        info: Callable[[], WorkerInfo],
        *,
        heartbeat_interval: float = 5.0,
        batch_window: float = 0.1,
        max_buffer: int = 100_000,
    ) -> None:
        self.listeners = tuple(listeners)
        self.worker_id = worker_id
        self._info = info
        self.heartbeat_interval = heartbeat_interval
        self.batch_window = batch_window
        self.max_buffer = max_buffer
        self.dropped = 0
        self._buffer: list[JobEvent] = []
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def job(
        self,
        kind: EventKind,
        message: Message,
        *,
        result: JobResult | None = None,
        error: str | None = None,
        reason: DeadReason | None = None,
        retry_at: float | None = None,
    ) -> None:
        """Record one job event (cheap; never awaits)."""
        buffer = self._buffer
        size = len(buffer)
        if size >= self.max_buffer:
            drop = size // 10 or 1
            del buffer[:drop]
            self.dropped += drop
        buffer.append(
            JobEvent(kind, message, _now(), self.worker_id, result, error, reason, retry_at)
        )
        if not size:
            self._wakeup.set()

    def started(self, message: Message) -> None:
        """:meth:`job` for a STARTED event (the most frequent: one per run)."""
        buffer = self._buffer
        if len(buffer) >= self.max_buffer:
            self.job(EventKind.STARTED, message)
            return
        buffer.append(JobEvent(_STARTED, message, _now(), self.worker_id))
        if len(buffer) == 1:
            self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"repid-events-{self.worker_id}"
        )

    async def stop(self, within: float = 5.0) -> None:
        """Hand over what is buffered, send the last heartbeat and end the background task.

        A listener that has not returned ``within`` seconds is cancelled.
        """
        self._stopping = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is None:
            return
        done, _ = await asyncio.wait([task], timeout=within)
        if not done:
            logger.warning("worker listeners did not finish within %.1fs; cancelling", within)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        next_beat = 0.0
        while True:
            now = time.monotonic()
            if now >= next_beat and not self._stopping:
                await self._heartbeat()
                next_beat = now + self.heartbeat_interval
            if self._stopping:
                await self._flush()
                await self._heartbeat()
                return
            if not self._buffer:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(next_beat - time.monotonic(), 0.0)):
                        await self._wakeup.wait()
                continue
            if not self._stopping:
                await asyncio.sleep(self.batch_window)
            await self._flush()

    async def _flush(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        for listener in self.listeners:
            try:
                await listener.on_events(batch)
            except Exception:
                logger.exception("worker listener %r failed on %d events", listener, len(batch))

    async def _heartbeat(self) -> None:
        info = self._info()
        for listener in self.listeners:
            try:
                await listener.on_heartbeat(info)
            except Exception:
                logger.exception("worker listener %r failed on a heartbeat", listener)
