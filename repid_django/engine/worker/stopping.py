"""Cancelling running jobs (how a worker run reacts to a stop request), and the limits a run
publishes at start.

``broker.cancel_job(queue, id)`` on a running job asks the worker holding it to stop (the Redis
broker's lease keeper polls for such requests every half second; see
:mod:`..brokers.redis.lease`). The run then marks the job's :class:`~.context.JobContext`
cancelled and, for an async actor, cancels its task (``CancelledError`` inside the actor); a
sync actor in a thread sees ``current_job().cancelled`` and is expected to return. A job still
waiting in the worker's buffer is dropped at once. Whatever the run ends with, its outcome is
``DEAD`` with reason ``cancelled``: not retried, kept as a dead letter (which can be requeued).
An actor run in a process (``run_in_process=True``) has its process terminated (see
``procs.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from ..actor import Actor
from ..brokers.base import DeadReason, Delivery, MessageBroker, Outcome, OutcomeKind
from ..limits import Limits
from .context import JobContext

logger = logging.getLogger("repid_django.worker")

CANCELLED_ERROR = "CancelledError: the job was cancelled while it ran (cancel_job)"


def cancelled(delivery: Delivery) -> Outcome:
    """The outcome of a job cancelled while it ran or waited in a worker."""
    return Outcome(delivery, OutcomeKind.DEAD, reason=DeadReason.CANCELLED, error=CANCELLED_ERROR)


class StopRequests:
    """The part of a worker run that answers stop requests (a mixin of the run)."""

    _contexts: dict[tuple[str, str], JobContext]
    _buffer: deque[tuple[Delivery, Actor]]
    _push: Callable[[Outcome], None]
    _loop: asyncio.AbstractEventLoop | None

    def _on_stop_request(self, queue: str, message_id: str) -> None:
        """Called by the broker, from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop_job, queue, message_id)

    def _stop_job(self, queue: str, message_id: str) -> None:
        context = self._contexts.get((queue, message_id))
        if context is not None:
            logger.info("job %s (%s): cancel requested, stopping it", message_id, context.actor)
            context.request_cancel()
            return
        for item in list(self._buffer):
            delivery = item[0]
            if (delivery.message.queue, delivery.message.id) == (queue, message_id):
                self._buffer.remove(item)
                logger.info("job %s: cancelled before it started", message_id)
                self._push(cancelled(delivery))
                return


async def publish_limits(
    broker: MessageBroker, actors: Iterable[Actor], queue_limits: Mapping[str, Limits]
) -> None:
    """Tell the broker the limits of this worker's actors (code is their source: an actor
    without limits clears what an older version set) and the ``queue_limits`` it was given.
    Brokers without limits are skipped (with a warning when there were limits to set)."""
    actors = list(actors)
    by_queue: dict[str, dict[str | None, Limits]] = {}
    for actor in actors:
        by_queue.setdefault(actor.queue, {})[actor.name] = actor.limits
    for queue, own in queue_limits.items():
        by_queue.setdefault(queue, {})[None] = own
    limited = bool(queue_limits) or any(not a.limits.empty for a in actors)
    for queue, chosen in by_queue.items():
        try:
            await broker.set_limits(queue, chosen)
        except NotImplementedError:
            if limited:
                logger.warning("%s does not enforce limits", type(broker).__name__)
            return
