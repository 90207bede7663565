"""Processing of one message: call its actor and turn what happened into an :class:`Outcome`.

The worker loop (``runner.py``) decides *when* a message runs; this module decides *what* its
run means: success (ACK, with a result), failure (RETRY after the actor's retry policy, or DEAD
after the last try), timeout (a failure), or an unknown actor (REJECT back to the queue after a
short, growing delay, then DEAD as ``unknown_actor``). Nothing here touches the broker.

Which results are kept follows the message's ``store_result``: every run's (``True``), none
(``False``), or with auto (``None``, the default) what is worth reading: a failure that ends
the job, a return value other than ``None``, and every run of a recurring job (its message
never goes away, so nothing else would tell that it ran). A successful ``None`` of a one-off
job is then not stored at all: the result lookup tells it from a run not yet over by its
message being gone (see ``Job.result``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any

from .. import tracing
from ..actor import Actor
from ..brokers.base import DeadReason, Delivery, Outcome, OutcomeKind
from ..message import Message
from ..results import JobResult, stamp
from ..retry import default_retry_policy
from ..serializer import JSON, check_json, dumps, loads
from .calling import RemoteFailure, call_actor, error_text
from .context import JobContext, bind
from .joblog import fields
from .procs import ProcessSlots

logger = logging.getLogger("repid_django.worker")

_NO_PROCESSES = sys.platform == "emscripten"
"""No process pools there: ``run_in_process`` actors run in threads (as the seeds say)."""


def _result(
    message: Message,
    started: float,
    finished: float,
    *,
    data: JSON = None,
    error: str | None = None,
    timed_out: bool = False,
) -> JobResult:
    """The stored result of one run: a success with ``data``, or a failure with ``error``."""
    return JobResult(
        job_id=message.id,
        actor=message.actor,
        success=error is None,
        data=data,
        exception=error,
        started_when=stamp(started),
        finished_when=stamp(finished),
        attempt=message.attempt,
        timed_out=timed_out,
    )


class Processor:
    """Runs one delivery with its actor; shared by every job of a worker run.

    ``thread_pool`` and ``process_pool`` are called (lazily) to get the executors for sync
    actors. ``unknown_delay`` is the first back-off for a job whose actor is not known here
    (doubled every time, capped at ``unknown_max_delay``); after ``unknown_max`` such returns
    the job is dead-lettered as ``unknown_actor``.
    """

    __slots__ = (
        "_known",
        "_process_pool",
        "_thread_pool",
        "unknown_delay",
        "unknown_max",
        "unknown_max_delay",
    )

    def __init__(
        self,
        actors: Mapping[str, Actor],
        thread_pool: Callable[[], Executor],
        process_pool: Callable[[], ProcessSlots],
        *,
        unknown_delay: float = 1.0,
        unknown_max: int = 5,
        unknown_max_delay: float = 60.0,
    ) -> None:
        self._known = ", ".join(sorted(actors)) or "none"
        self._thread_pool = thread_pool
        self._process_pool = process_pool
        self.unknown_delay = unknown_delay
        self.unknown_max = unknown_max
        self.unknown_max_delay = unknown_max_delay

    async def process(
        self, delivery: Delivery, actor: Actor, context: JobContext | None = None
    ) -> Outcome:
        """Run ``actor`` for ``delivery`` within its timeout; raises only ``CancelledError``.
        ``context`` becomes the actor's ``current_job()`` (threads get it too)."""
        if context is not None:
            bind(context)
        message = delivery.message
        timeout = message.timeout
        if actor.timeout is not None and actor.timeout < timeout:
            timeout = actor.timeout
        if tracing.enabled():
            return await self._traced(delivery, actor, limit=timeout)
        return await self._run(delivery, actor, limit=timeout)

    async def _traced(self, delivery: Delivery, actor: Actor, *, limit: float) -> Outcome:
        with tracing.run_span(delivery.message) as span:
            outcome = await self._run(delivery, actor, limit=limit)
            if outcome.error is not None:
                tracing.failed(span, outcome.error)
            return outcome

    async def _run(self, delivery: Delivery, actor: Actor, *, limit: float) -> Outcome:
        message = delivery.message
        timeout = limit
        started = time.time()
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                value = await self._invoke(actor, message.args)
            store = message.store_result
            if store is None:  # auto: a None of a one-off job is not worth a result
                store = value is not None or message.deferred_by is not None
            if store:
                check_json(value, f"the return value of actor {actor.name!r}")
        except TimeoutError as exc:
            if deadline.expired():
                error = (
                    f"TimeoutError: actor {actor.name!r} ran longer than its timeout of "
                    f"{timeout:g}s and was stopped"
                )
                return self._failed(delivery, actor, started, error, timed_out=True)
            return self._failed(delivery, actor, started, error_text(exc))
        except Exception as exc:
            return self._failed(delivery, actor, started, error_text(exc))
        now = time.time()
        result = _result(message, started, now, data=value) if store else None
        run_at = None if message.deferred_by is None else now + message.deferred_by
        return Outcome(delivery, OutcomeKind.ACK, result=result, run_at=run_at)

    async def _invoke(self, actor: Actor, args: JSON) -> Any:
        fn = actor.fn
        if actor.is_async:
            return await call_actor(fn, args)
        loop = asyncio.get_running_loop()
        if actor.run_in_process and not _NO_PROCESSES:
            ok, payload = await self._process_pool().run(fn, dumps(args), actor.name)
            if not ok:
                raise RemoteFailure(str(payload))
            return loads(payload)
        # The thread runs in a copy of this task's context: the current connection (a context
        # variable set by ``app.magic()``) is the one the actor enqueues over.
        context = contextvars.copy_context()
        value = await loop.run_in_executor(
            self._thread_pool(), functools.partial(context.run, call_actor, fn, args)
        )
        if inspect.isawaitable(value):
            value = await value
        return value

    def _failed(
        self,
        delivery: Delivery,
        actor: Actor,
        started: float,
        error: str,
        *,
        timed_out: bool = False,
    ) -> Outcome:
        message = delivery.message
        now = time.time()
        reason = DeadReason.TIMEOUT if timed_out else DeadReason.FAILED
        if message.attempt < message.retries:
            delay = self._retry_delay(actor, message.attempt + 1)
            return Outcome(
                delivery, OutcomeKind.RETRY, run_at=now + delay, reason=reason, error=error
            )
        return self._dead(delivery, reason, error, started, now, timed_out=timed_out)

    @staticmethod
    def _dead(
        delivery: Delivery,
        reason: DeadReason,
        error: str,
        started: float,
        now: float,
        *,
        timed_out: bool = False,
    ) -> Outcome:
        message = delivery.message
        result = None
        if message.store_result is not False:  # auto keeps failures: few, and worth reading
            result = _result(message, started, now, error=error, timed_out=timed_out)
        run_at = None if message.deferred_by is None else now + message.deferred_by
        return Outcome(
            delivery, OutcomeKind.DEAD, result=result, run_at=run_at, reason=reason, error=error
        )

    @staticmethod
    def _retry_delay(actor: Actor, retry_number: int) -> float:
        try:
            delay = float(actor.retry_policy(retry_number))
            if not math.isfinite(delay) or delay < 0:
                raise ValueError(f"returned {delay!r}")
        except Exception as exc:
            logger.error(
                "retry policy of actor %r failed for retry %d (%s); using the default policy",
                actor.name,
                retry_number,
                exc,
            )
            delay = float(default_retry_policy(retry_number))
        return delay

    def unknown(self, delivery: Delivery) -> Outcome:
        """The outcome for a job whose actor this worker does not have."""
        message = delivery.message
        now = time.time()
        if message.unknown_count >= self.unknown_max:
            error = (
                f"no actor named {message.actor!r} was found by the workers that took this job "
                f"({message.unknown_count + 1} times; this worker knows: {self._known}). "
                "Register it with @router.actor on a worker that consumes queue "
                f"{message.queue!r}, then requeue this dead letter"
            )
            return self._dead(delivery, DeadReason.UNKNOWN_ACTOR, error, now, now)
        delay = min(self.unknown_delay * 2**message.unknown_count, self.unknown_max_delay)
        logger.warning(
            "no actor named %r on this worker (it knows: %s); job %s goes back to queue %r "
            "for another worker, again in %.3gs",
            message.actor,
            self._known,
            message.id,
            message.queue,
            delay,
            extra=fields(message),
        )
        return Outcome(delivery, OutcomeKind.REJECT, run_at=now + delay, count_unknown=True)
