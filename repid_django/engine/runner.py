"""One run of a worker: the claim loop, concurrency, batched outcomes and graceful shutdown.

``Worker.run()`` builds a :class:`_Runner`, awaits it and returns it; its counters
(``processed`` ...) tell what the run did. The processing of one message is in
``processor.py``; this module only decides when messages run and records their outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from . import signals
from .actor import Actor
from .brokers.base import DeadReason, Delivery, Outcome, OutcomeKind
from .emitter import Emitter
from .events import EventKind, WorkerInfo
from .processor import Processor
from .results import JobResult

if TYPE_CHECKING:
    from .connection import Connection
    from .worker import Worker

logger = logging.getLogger("repid_django.worker")

GATHER_WINDOW = 0.005
"""Seconds a busy worker waits for more free slots before claiming only a few messages."""

PROCESS_EXIT_WAIT = 1.0
"""Seconds pool processes get to exit at shutdown before the ones still busy (running a job
that timed out or was cancelled) are terminated."""

_EVENT_OF = {
    OutcomeKind.ACK: EventKind.SUCCEEDED,
    OutcomeKind.RETRY: EventKind.FAILED,
    OutcomeKind.DEAD: EventKind.DEAD,
    OutcomeKind.REJECT: EventKind.REJECTED,
}


class _Runner:
    """A worker run and its counters.

    ``processed``: actor runs that ended (successfully or not); ``succeeded``, ``failed``
    (runs that raised or timed out), ``retried``, ``dead``, ``rejected`` (returned to the
    queue without spending a retry), ``lease_lost`` (outcomes the broker refused), ``claimed``
    (messages received), ``unknown`` (messages for actors this worker does not have).
    """

    def __init__(self, worker: Worker, connection: Connection) -> None:
        self.worker_id = worker.id
        self.processed = 0
        self.succeeded = 0
        self.failed = 0
        self.retried = 0
        self.dead = 0
        self.rejected = 0
        self.lease_lost = 0
        self.claimed = 0
        self.unknown = 0
        self.started_at = 0.0
        self.stopped_at: float | None = None
        self.state = "starting"
        self._worker = worker
        self._connection = connection
        self._broker = connection.message_broker
        self._results_apart = connection.results_apart
        self._actors: dict[str, Actor] = dict(worker.actors)
        self._queues = list(worker.queues)
        self._concurrency = worker.concurrency
        self._capacity = worker.concurrency + (worker.prefetch or 0)
        self._watermark = max(1, min(worker.concurrency // 10, 20))
        self._limit = worker.messages_limit
        self._tasks: dict[asyncio.Task[Outcome], Delivery] = {}
        self._buffer: deque[tuple[Delivery, Actor]] = deque()
        self._pending: list[Outcome] = []
        self._finishing = False
        self._closing = False
        self._flush_event = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._stop_reason: str | None = None
        self._forced = False
        self._thread_pool: ThreadPoolExecutor | None = None
        self._process_pool: ProcessPoolExecutor | None = None
        self._processor = Processor(
            self._actors,
            self._get_thread_pool,
            self._get_process_pool,
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
        loop = asyncio.get_running_loop()
        self.started_at = time.time()
        worker = self._worker
        if worker.auto_declare:
            for queue in self._queues:
                await self._broker.declare_queue(queue)
        remove_signals = signals.install(loop, worker.handle_signals, self._on_signal)
        flusher = loop.create_task(self._flush_loop(), name=f"repid-finish-{self.worker_id}")
        if self._emitter is not None:
            self._emitter.start()
        self.state = "running"
        logger.info(
            "worker %s started: queues %s, actors %s, concurrency %d",
            self.worker_id,
            ", ".join(self._queues) or "(none)",
            ", ".join(sorted(self._actors)) or "(none)",
            self._concurrency,
        )
        try:
            await self._consume()
        finally:
            try:
                await self._drain()
            finally:
                self._closing = True
                self._flush_event.set()
                await flusher
                remove_signals()
                await self._shutdown_pools()
                self.state = "stopped"
                self.stopped_at = time.time()
                if self._emitter is not None:
                    await self._emitter.stop()
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
        backoff = 0.0
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
            except Exception:
                backoff = min(backoff * 2 or 0.1, 5.0)
                logger.exception("claim failed; retrying in %.1fs", backoff)
                await self._pause(backoff)
                continue
            backoff = 0.0
            if not deliveries:
                if burst:
                    if self._settled():
                        return
                    await self._wait_settled()
                continue
            self.claimed += len(deliveries)
            if self._stop_reason is not None:
                for delivery in deliveries:
                    self._push(Outcome(delivery, OutcomeKind.REJECT))
                return
            for delivery in deliveries:
                self._dispatch(delivery)

    def _dispatch(self, delivery: Delivery) -> None:
        actor = self._actors.get(delivery.message.actor)
        if actor is None:
            self.unknown += 1
            self._push(self._processor.unknown(delivery))
        elif len(self._tasks) < self._concurrency:
            self._start(delivery, actor)
        else:
            self._buffer.append((delivery, actor))

    def _start(self, delivery: Delivery, actor: Actor) -> None:
        if self._emitter is not None:
            self._emitter.job(EventKind.STARTED, delivery.message)
        task = asyncio.get_running_loop().create_task(self._processor.process(delivery, actor))
        self._tasks[task] = delivery
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[Outcome]) -> None:
        delivery = self._tasks.pop(task)
        if task.cancelled():
            outcome = Outcome(delivery, OutcomeKind.REJECT)
        elif (exc := task.exception()) is not None:
            logger.error("processing job %s crashed", delivery.message.id, exc_info=exc)
            outcome = Outcome(delivery, OutcomeKind.REJECT, run_at=time.time() + 1.0)
        else:
            outcome = task.result()
            self.processed += 1
        self._push(outcome)
        if self._buffer and self._stop_reason is None:
            self._start(*self._buffer.popleft())
        self._wakeup.set()

    def _settled(self) -> bool:
        return not (self._tasks or self._buffer or self._pending or self._finishing)

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
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)

    def _reject_buffer(self) -> None:
        while self._buffer:
            delivery, _ = self._buffer.popleft()
            self._push(Outcome(delivery, OutcomeKind.REJECT))

    async def _shutdown_pools(self) -> None:
        threads, processes = self._thread_pool, self._process_pool
        self._thread_pool = self._process_pool = None
        if threads is not None:
            # Never wait here: a sync actor that timed out may still hold its thread.
            threads.shutdown(wait=False, cancel_futures=True)
        if processes is not None:
            children = list((getattr(processes, "_processes", None) or {}).values())
            processes.shutdown(wait=False, cancel_futures=True)
            await asyncio.to_thread(_reap, children, PROCESS_EXIT_WAIT)

    # executors -------------------------------------------------------------------------------
    def _get_thread_pool(self) -> Executor:
        if self._thread_pool is None:
            size = self._worker.thread_pool_size or min(self._concurrency, 32)
            self._thread_pool = ThreadPoolExecutor(size, thread_name_prefix="repid-actor")
        return self._thread_pool

    def _get_process_pool(self) -> Executor:
        if self._process_pool is None:
            size = self._worker.process_pool_size or min(self._concurrency, os.cpu_count() or 1)
            self._process_pool = ProcessPoolExecutor(
                size, mp_context=multiprocessing.get_context("spawn")
            )
        return self._process_pool

    # outcomes --------------------------------------------------------------------------------
    def _push(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._flush_event.set()

    async def _flush_loop(self) -> None:
        event = self._flush_event
        window = self._worker.finish_window
        batch_max = self._worker.finish_batch
        while True:
            await event.wait()
            event.clear()
            if not self._pending:
                if self._closing:
                    return
                continue
            if window > 0 and len(self._pending) < batch_max and not self._closing:
                await asyncio.sleep(window)
            batch, self._pending = self._pending, []
            self._finishing = True
            try:
                await self._record(batch)
            finally:
                self._finishing = False
                event.set()
                self._wakeup.set()

    async def _record(self, batch: list[Outcome]) -> None:
        sent = batch
        if self._results_apart:
            sent = [dataclasses.replace(o, result=None) if o.result else o for o in batch]
        applied = await self._finish(sent)
        if applied is None:
            return
        results: list[tuple[JobResult, float | None]] = []
        emitter = self._emitter
        for outcome, ok in zip(batch, applied, strict=True):
            kind = outcome.kind
            message = outcome.delivery.message
            if not ok:
                self.lease_lost += 1
                logger.warning(
                    "lease lost for job %s (actor %r): the broker refused its %s; another "
                    "worker may run it again",
                    message.id,
                    message.actor,
                    kind.value,
                )
                if emitter is not None:
                    emitter.job(EventKind.LEASE_LOST, message, result=outcome.result)
                continue
            if kind is OutcomeKind.ACK:
                self.succeeded += 1
            elif kind is OutcomeKind.RETRY:
                self.failed += 1
                self.retried += 1
            elif kind is OutcomeKind.DEAD:
                self.dead += 1
                if outcome.reason is not DeadReason.UNKNOWN_ACTOR:
                    self.failed += 1
            else:
                self.rejected += 1
            if outcome.result is not None and self._results_apart:
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
        for attempt in range(6):
            try:
                return await self._broker.finish(batch)
            except Exception:
                if attempt == 5 or (self._closing and attempt >= 2):
                    break
                delay = min(0.1 * 2**attempt, 2.0)
                logger.exception(
                    "recording %d outcomes failed; retrying in %.1fs", len(batch), delay
                )
                await asyncio.sleep(delay)
        logger.error(
            "could not record %d job outcomes; the broker returns those jobs to their queue "
            "when their leases expire",
            len(batch),
        )
        return None


def _reap(children: list[Any], wait: float) -> None:
    """Join pool processes; terminate those still busy with an abandoned job after ``wait``."""
    deadline = time.monotonic() + wait
    for child in children:
        child.join(max(deadline - time.monotonic(), 0.0))
    for child in children:
        if child.is_alive():
            logger.warning("terminating pool process %s: its job was abandoned", child.pid)
            child.terminate()
            child.join(1.0)
