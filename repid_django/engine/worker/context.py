"""The job an actor runs for: :func:`current_job`, its cancellation flag and its progress.

Inside an actor (async, or sync in the worker's threads), ``current_job()`` returns a
:class:`JobContext`: the job's id, actor, queue and attempt, ``cancelled`` (true once someone
asked to cancel the running job: ``ops.cancel_job`` or the admin; an async actor is interrupted
with ``CancelledError`` as well, a sync one is expected to look at the flag and return), and
progress reporting::

    from repid_django import current_job, set_progress

    @router.actor
    async def resize(images: list[str]) -> None:
        for n, name in enumerate(images, 1):
            ...
            await set_progress(n / len(images), f"{n} of {len(images)} images")

    @router.actor
    def export(rows: int) -> None:  # sync: runs in a thread
        for n in range(rows):
            if current_job().cancelled:
                return
            ...
            set_progress_sync(n / rows)

Progress is kept by the broker next to the job (on Redis, one small key per job that reports
any, expiring an hour after its last report) and shown by the admin and the monitor. Actors
that run in a process (``run_in_process=True``) have no context.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..brokers.base import MessageBroker
    from ..message import Message

PROGRESS_TEXT_MAX = 200
"""Characters of progress text kept (longer text is cut)."""
SYNC_TIMEOUT = 5.0
"""Seconds a sync actor's ``set_progress_sync`` may wait for the broker."""

_current: ContextVar[JobContext | None] = ContextVar("repid_current_job", default=None)


class JobContext:
    """What a running actor can know and tell about its job (see the module docstring)."""

    __slots__ = (
        "_broker",
        "_cancelled",
        "_loop",
        "actor",
        "attempt",
        "id",
        "interruptible",
        "queue",
        "task",
    )

    def __init__(
        self,
        message: Message,
        broker: MessageBroker,
        loop: asyncio.AbstractEventLoop,
        *,
        interruptible: bool = False,
    ) -> None:
        self.id = message.id
        self.actor = message.actor
        self.queue = message.queue
        self.attempt = message.attempt
        self._broker = broker
        self._loop = loop
        self._cancelled = threading.Event()
        self.task: asyncio.Task[Any] | None = None
        """The worker's task running this job (set by the worker)."""
        self.interruptible = interruptible
        """True for an async actor: a cancel also cancels its task."""

    def __repr__(self) -> str:
        return f"<JobContext {self.id} actor={self.actor!r} queue={self.queue!r}>"

    @property
    def cancelled(self) -> bool:
        """True once a cancellation of this running job was requested."""
        return self._cancelled.is_set()

    def request_cancel(self) -> None:
        """Mark the job cancelled; an interruptible one's task is cancelled too."""
        self._cancelled.set()
        if self.interruptible and self.task is not None and not self.task.done():
            self.task.cancel()

    async def set_progress(self, value: float, text: str = "") -> None:
        """Report progress: ``value`` from 0 to 1, with an optional short text."""
        await self._broker.set_progress(self.queue, self.id, _progress(value, text))

    def set_progress_sync(self, value: float, text: str = "") -> None:
        """:meth:`set_progress` for a sync actor (in a worker thread)."""
        data = _progress(value, text)
        sync = getattr(self._broker, "set_progress_sync", None)
        if sync is not None:
            sync(self.queue, self.id, data)
            return
        future = asyncio.run_coroutine_threadsafe(
            self._broker.set_progress(self.queue, self.id, data), self._loop
        )
        future.result(SYNC_TIMEOUT)


def current_job() -> JobContext:
    """The job the calling actor runs for; ``RuntimeError`` outside an actor."""
    context = _current.get()
    if context is None:
        raise RuntimeError(
            "current_job() is only available inside an actor run by a worker (not in a "
            "run_in_process actor, nor outside a job)"
        )
    return context


async def set_progress(value: float, text: str = "") -> None:
    """Report the current job's progress (``value`` from 0 to 1); see :class:`JobContext`."""
    await current_job().set_progress(value, text)


def set_progress_sync(value: float, text: str = "") -> None:
    """:func:`set_progress` for sync actors."""
    current_job().set_progress_sync(value, text)


def bind(context: JobContext) -> None:
    """Make ``context`` the current job of the running task (the worker calls this)."""
    _current.set(context)


def _progress(value: float, text: str) -> dict[str, Any]:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"progress must be a number from 0 to 1, got {value!r}")
    if not 0 <= value <= 1:
        raise ValueError(f"progress must be from 0 to 1, got {value!r}")
    if not isinstance(text, str):
        raise TypeError(f"progress text must be a str, got {type(text).__name__}")
    return {"value": float(value), "text": text[:PROGRESS_TEXT_MAX], "at": time.time()}
