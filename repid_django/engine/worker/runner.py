"""One run of a worker: the claim loop, concurrency, batched outcomes and graceful shutdown.

``Worker.run()`` builds a :class:`_Runner`, awaits it and returns it; its counters
(``processed`` ...) tell what the run did. The processing of one message is in
``processor.py``; this module only decides when messages run and records their outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections import deque
from typing import TYPE_CHECKING

from ..actor import Actor
from ..brokers.base import Delivery, Outcome, OutcomeKind
from ..schedules.scheduler import Scheduler
from . import signals
from .claims import ClaimFailures
from .context import JobContext
from .counters import CountedRun, Counters
from .emitter import Emitter
from .events import WorkerInfo
from .options import RunOptions
from .pools import Pools
from .processor import Processor
from .recorder import Recorder
from .stopping import StopRequests, cancelled, publish_limits

if TYPE_CHECKING:
    from ..connection import Connection

logger = logging.getLogger("repid_django.worker")

GATHER_WINDOW = 0.005
"""Seconds a busy worker waits for more free slots before claiming only a few messages."""

LISTENER_STOP_WAIT = 5.0
"""Seconds listeners get to take the last events at shutdown."""

CANCEL_WAIT = 5.0
"""Seconds cancelled actors get to unwind at shutdown."""


class _Runner(CountedRun, StopRequests):
    """A worker run and its counters (``processed`` ..., read from :attr:`counters`; see
    :class:`~.counters.Counters` for what each counts)."""

    def __init__(self, worker: RunOptions, connection: Connection) -> None:
        self.worker_id = worker.id
        self.counters = Counters()
        self.started_at = 0.0
        self.stopped_at: float | None = None
        self.state = "starting"
        self._worker = worker
        self._connection = connection
        self._broker = connection.message_broker
        self._actors: dict[str, Actor] = dict(worker.actors)
        self._queues = list(worker.queues)
        self._concurrency = worker.concurrency
        self._capacity = worker.concurrency + (worker.prefetch or 0)
        self._watermark = max(1, min(worker.concurrency // 10, 20))
        self._limit = worker.messages_limit
        self._tasks: dict[asyncio.Task[Outcome], Delivery] = {}
        self._buffer: deque[tuple[Delivery, Actor]] = deque()
        self._contexts: dict[tuple[str, str], JobContext] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        self._stop_reason: str | None = None
        self._forced = False
        self._pools = Pools(worker.concurrency, worker.thread_pool_size, worker.process_pool_size)
        self._processor = Processor(
            self._actors,
            self._pools.threads,
            self._pools.processes,
            unknown_delay=worker.unknown_actor_delay,
            unknown_max=worker.unknown_actor_max,
        )
        self._emitter: Emitter | None = None
        if worker.listeners:
            self._emitter = Emitter(
                worker.listeners,
                worker.id,
                self.info,
                heartbeat_interval=worker.heartbeat_interval,
            )
        self._recorder = Recorder(
            self.counters,
            lambda: self.busy,
            connection,
            self._emitter,
            self._wakeup.set,
            window=worker.finish_window,
            batch_max=worker.finish_batch,
        )
        self._push = self._recorder.push
        self.scheduler: Scheduler | None = None
        """The run's scheduler, when it fires schedules."""

    def __repr__(self) -> str:
        return (
            f"<_Runner {self.worker_id} {self.state}: processed={self.processed} "
            f"failed={self.failed} rejected={self.rejected}>"
        )

    @property
    def running(self) -> int:
        """Actor runs in progress now."""
        return len(self._tasks)

    def info(self) -> WorkerInfo:
        """A heartbeat snapshot of this run."""
        return WorkerInfo(
            id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=tuple(self._queues),
            concurrency=self._concurrency,
            started_at=self.started_at,
            at=time.time(),
            processed=self.processed,
            failed=self.failed,
            running=len(self._tasks),
            state=self.state,
            actors=tuple(sorted(self._actors)),
        )

    # control ---------------------------------------------------------------------------------
    def stop(self, force: bool = False, reason: str = "stop requested") -> None:
        """Stop claiming and drain; ``force`` cancels running actors without waiting."""
        if self._stop_reason is None:
            self._stop_reason = reason
            logger.info("worker %s stopping (%s)", self.worker_id, reason)
            wake = getattr(self._broker, "wake_claimers", None)
            if wake is not None:
                wake()
        if force and not self._forced:
            self._forced = True
            logger.warning("worker %s: forced stop, cancelling running actors", self.worker_id)
        self._wakeup.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        name = signal.Signals(sig).name
        if self._stop_reason is None:
            self.stop(reason=f"{name} received; a second one forces the stop")
        else:
            self.stop(force=True, reason=name)

    # the run ---------------------------------------------------------------------------------
    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._broker.watch_stops(self._on_stop_request)
        self.started_at = time.time()
        worker = self._worker
        if worker.auto_declare:
            for queue in self._queues:
                await self._broker.declare_queue(queue)
        await publish_limits(self._broker, self._actors.values(), worker.queue_limits)
        remove_signals = signals.install(loop, worker.handle_signals, self._on_signal)
        self._recorder.start()
        if self._emitter is not None:
            self._emitter.start()
        self.state = "running"
        logger.info(
            "worker %s started: queues %s, actors %s, concurrency %d, broker %s",
            self.worker_id,
            ", ".join(self._queues) or "(none)",
            ", ".join(sorted(self._actors)) or "(none)",
            self._concurrency,
            getattr(self._broker, "target", type(self._broker).__name__),  # password redacted
        )
        schedules = None
        if not worker.burst:  # also fires the schedules kept in the broker (Job(cron=))
            self.scheduler = Scheduler(self._broker, worker.schedules, worker.schedule_source)
            schedules = loop.create_task(self.scheduler.run(), name="repid-schedules")
        try:
            await self._consume()
        except asyncio.CancelledError:
            self.stop(force=True, reason="the worker's task was cancelled")
            raise
        finally:
            if schedules is not None:
                schedules.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await schedules
            try:
                await self._drain()
            finally:
                await self._recorder.close()
                remove_signals()
                await self._pools.shutdown()
                self.state = "stopped"
                self.stopped_at = time.time()
                if self._emitter is not None:
                    await self._emitter.stop(LISTENER_STOP_WAIT)
                logger.info(
                    "worker %s stopped: %d processed, %d failed, %d rejected",
                    self.worker_id,
                    self.processed,
                    self.failed,
                    self.rejected,
                )

    async def _consume(self) -> None:
        broker = self._broker
        queues = self._queues
        burst = self._worker.burst
        wait = 0.0 if burst else self._worker.claim_wait
        batch_max = self._worker.claim_batch
        failures = ClaimFailures()
        gather_until = 0.0
        while self._stop_reason is None:
            remaining = self._limit - self.claimed
            if remaining <= 0:
                logger.info("worker %s reached its messages limit", self.worker_id)
                return
            busy = len(self._tasks) + len(self._buffer)
            free = self._capacity - busy
            if free <= 0:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if busy and free < self._watermark and free < remaining:
                # A few slots are free: wait a moment for more, so one claim fetches a batch.
                now = time.monotonic()
                if not gather_until:
                    gather_until = now + GATHER_WINDOW
                if now < gather_until:
                    self._wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(gather_until - now):
                            await self._wakeup.wait()
                    continue
            gather_until = 0.0
            try:
                deliveries = await broker.claim(queues, int(min(free, remaining, batch_max)), wait)
            except Exception as exc:
                await self._pause(failures.failed(exc))
                continue
            failures.succeeded()
            if not deliveries:
                if burst:
                    if self._settled():
                        return
                    await self._wait_settled()
                continue
            self.counters.claimed += len(deliveries)
            if self._stop_reason is not None:
                for delivery in deliveries:
                    self._push(Outcome(delivery, OutcomeKind.REJECT))
                return
            for delivery in deliveries:
                self._dispatch(delivery)

    def _dispatch(self, delivery: Delivery) -> None:
        actor = self._actors.get(delivery.message.actor)
        if actor is None:
            self.counters.unknown += 1
            self._push(self._processor.unknown(delivery))
        elif len(self._tasks) < self._concurrency:
            self._start(delivery, actor)
        else:
            self._buffer.append((delivery, actor))

    def _start(self, delivery: Delivery, actor: Actor) -> None:
        if self._emitter is not None:
            self._emitter.started(delivery.message)
        message = delivery.message
        self._broker.started(delivery, actor.timeout_for(message))
        loop = asyncio.get_running_loop()
        interruptible = actor.is_async or actor.run_in_process
        context = JobContext(message, self._broker, loop, interruptible=interruptible)
        task = loop.create_task(self._processor.process(delivery, actor, context))
        context.task = task
        self._contexts[(message.queue, message.id)] = context
        self._tasks[task] = delivery
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[Outcome]) -> None:
        delivery = self._tasks.pop(task, None)
        if delivery is None:
            return  # given up on at shutdown (see _drain)
        context = self._contexts.pop((delivery.message.queue, delivery.message.id), None)
        if context is not None and context.cancelled:
            outcome = cancelled(delivery)  # however the run ended: not retried
            self.counters.processed += 1
        elif task.cancelled():
            outcome = Outcome(delivery, OutcomeKind.REJECT)
        elif (exc := task.exception()) is not None:
            logger.error("processing job %s crashed", delivery.message.id, exc_info=exc)
            outcome = Outcome(delivery, OutcomeKind.REJECT, run_at=time.time() + 1.0)
        else:
            outcome = task.result()
            self.counters.processed += 1
        self._push(outcome)
        if self._buffer and self._stop_reason is None:
            self._start(*self._buffer.popleft())
        self._wakeup.set()

    @property
    def busy(self) -> bool:
        """True while jobs run or wait for a free slot in this worker."""
        return bool(self._tasks or self._buffer)

    def _settled(self) -> bool:
        return not (self._tasks or self._buffer) and self._recorder.idle

    async def _wait_settled(self) -> None:
        while not self._settled() and self._stop_reason is None:
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _pause(self, seconds: float) -> None:
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while self._stop_reason is None:
                    await self._wakeup.wait()
                    self._wakeup.clear()

    # shutdown --------------------------------------------------------------------------------
    async def _drain(self) -> None:
        self.state = "draining"
        deadline = time.monotonic() + self._worker.graceful_shutdown_time
        while self._tasks or self._buffer:
            if self._stop_reason is not None:
                self._reject_buffer()
            if self._forced or not (self._tasks or self._buffer):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
        self._reject_buffer()
        tasks = list(self._tasks)
        if tasks:
            logger.warning(
                "worker %s: %d actors still running after the graceful shutdown time; "
                "cancelling them and returning their jobs to the queue",
                self.worker_id,
                len(tasks),
            )
            for task in tasks:
                task.cancel()
            _, stubborn = await asyncio.wait(tasks, timeout=CANCEL_WAIT)
            await asyncio.sleep(0)  # let the done callbacks record the rejections
            for task in stubborn:  # an actor that swallowed its cancellation
                delivery = self._tasks.pop(task, None)
                if delivery is not None:
                    logger.error(
                        "actor %r ignored its cancellation; returning job %s to the queue",
                        delivery.message.actor,
                        delivery.message.id,
                    )
                    self._push(Outcome(delivery, OutcomeKind.REJECT))

    def _reject_buffer(self) -> None:
        while self._buffer:
            delivery, _ = self._buffer.popleft()
            self._push(Outcome(delivery, OutcomeKind.REJECT))
