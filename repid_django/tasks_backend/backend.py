"""Django 6's ``django.tasks`` on the Repid engine: ``RepidTaskBackend``.

::

    TASKS = {
        "default": {
            "BACKEND": "repid_django.backend.RepidTaskBackend",
            "QUEUES": ["default", "emails"],     # optional; [] allows any queue
            "OPTIONS": {"TIMEOUT": 600},         # optional; seconds a run may take
        }
    }

``task.enqueue()`` sends one job over this thread's sync connection (``await
task.aenqueue()`` over the event loop's own); ``runworker`` runs it with the project's
actors. The job goes to ``task.queue_name`` with ``task.priority`` (Django's -100..100 scale is
the engine's) and ``run_after`` as its ``deferred_until``. The result id is the job's message id,
``"<queue>:<uuid hex>"``, so ``get_result(id)`` reads everything from the queue's keys in one
round trip (see ``backend_results``). Every task's result is stored (``store_result=True``:
a ``TaskResult`` is rebuilt from it, even for a task that returns ``None``) and kept for
``REPID["RESULT_TTL"]`` (an hour by default).

Django 6's ``django.tasks`` has no enqueue-on-commit option; inside ``transaction.atomic()``
use ``transaction.on_commit(functools.partial(my_task.enqueue, ...))``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from inspect import iscoroutinefunction
from typing import Any

from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend
from django.tasks.signals import task_enqueued

from ..engine.connection import Connection, get_connection
from ..engine.job import DEFAULT_TIMEOUT, Job
from ..engine.message import Message, new_id
from ..engine.queue import validate_queue_name
from ..engine.results import stamp
from ..engine.serializer import JSON, check_json
from .payload import ASYNC_ACTOR, SYNC_ACTOR, Payload, register
from .results import fetch, fetch_sync, to_task_result

__all__ = ["RepidTaskBackend"]


class RepidTaskBackend(BaseTaskBackend):
    """Runs ``django.tasks`` tasks on the Repid engine (see the module docstring)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        for queue in self.queues:
            try:
                validate_queue_name(queue)
            except ValueError as exc:
                raise InvalidTaskBackend(f"TASKS[{alias!r}]['QUEUES']: {exc}") from None
        timeout = self.options.get("TIMEOUT", DEFAULT_TIMEOUT.total_seconds())
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidTaskBackend(
                f"TASKS[{alias!r}]['OPTIONS']['TIMEOUT'] must be a positive number of seconds, "
                f"got {timeout!r}"
            )
        self.timeout = float(timeout)

    def validate_task(self, task: Task[..., Any]) -> None:
        if self.queues and task.queue_name not in self.queues:
            allowed = ", ".join(repr(q) for q in sorted(self.queues))
            raise InvalidTask(
                f"task {task.module_path!r}: queue {task.queue_name!r} is not allowed by the "
                f"task backend {self.alias!r} (its QUEUES are {allowed}); add it to "
                f"TASKS[{self.alias!r}]['QUEUES'] or use one of those"
            )
        try:
            validate_queue_name(task.queue_name)
        except ValueError as exc:
            raise InvalidTask(f"task {task.module_path!r}: {exc}") from None
        super().validate_task(task)
        register(task)  # a task declared for this backend: workers may run it by its path

    # enqueue -----------------------------------------------------------------------------
    def _prepare[**P, R](
        self, task: Task[P, R], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[Message, TaskResult[P, R]]:
        """Validate ``task`` and its arguments and build its message (nothing is sent)."""
        self.validate_task(task)
        call_args = list(args)
        for index, value in enumerate(call_args):
            _check(task, value, f"args[{index}]")
        for key, value in kwargs.items():
            _check(task, value, f"kwargs[{key!r}]")
        result_id = f"{task.queue_name}:{new_id()}"
        now = time.time()
        payload = Payload(
            id=result_id,
            task=task.module_path,
            args=call_args,
            kwargs=dict(kwargs),
            backend=self.alias,
            priority=int(task.priority),
            run_after=None if task.run_after is None else task.run_after.timestamp(),
            enqueued_at=now,
        )
        job = Job(
            ASYNC_ACTOR if iscoroutinefunction(task.func) else SYNC_ACTOR,
            queue=task.queue_name,
            priority=int(task.priority),
            args=dict(payload),
            timeout=self.timeout,
            deferred_until=task.run_after,
            store_result=True,  # get_result rebuilds the TaskResult from it
        )
        message = job.to_message(now).with_changes(id=result_id)
        task_result: TaskResult[P, R] = TaskResult(
            task=task,
            id=result_id,
            status=TaskResultStatus.READY,
            enqueued_at=None,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=call_args,
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        return message, task_result

    def enqueue[**P, R](
        self, task: Task[P, R], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[P, R]:
        """Send ``task`` now over this thread's sync connection (sync code only)."""
        message, task_result = self._prepare(task, args, kwargs)
        _sync(_sender(message), "enqueue", "aenqueue", _sync_sender(message))
        _enqueued(task_result, message)
        task_enqueued.send(sender=type(self), task_result=task_result)
        return task_result

    async def aenqueue[**P, R](
        self, task: Task[P, R], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[P, R]:
        """Send ``task`` over the engine's async path (no thread hop)."""
        message, task_result = self._prepare(task, args, kwargs)
        connection = get_connection()
        await connection.run(lambda: _sender(message)(connection))
        _enqueued(task_result, message)
        await task_enqueued.asend(sender=type(self), task_result=task_result)
        return task_result

    # results -----------------------------------------------------------------------------
    def get_result(self, result_id: str) -> TaskResult[..., Any]:
        """The task's state now (``TaskResultDoesNotExist`` if unknown or expired)."""
        alias = self.alias

        async def work(connection: Connection) -> TaskResult[..., Any]:
            return to_task_result(result_id, await fetch(connection, result_id), alias)

        def sync(connection: Connection) -> TaskResult[..., Any]:
            return to_task_result(result_id, fetch_sync(connection, result_id), alias)

        return _sync(work, "get_result", "aget_result", sync)

    async def aget_result(self, result_id: str) -> TaskResult[..., Any]:
        connection = get_connection()
        found = await connection.run(lambda: fetch(connection, result_id))
        return to_task_result(result_id, found, self.alias)


def _check(task: Task[..., Any], value: object, where: str) -> None:
    try:
        check_json(value, where)
    except TypeError as exc:
        raise TypeError(f"task {task.module_path!r}: {exc}; nothing was enqueued") from None


def _sender(message: Message) -> Callable[[Connection], Coroutine[Any, Any, JSON]]:
    async def send(connection: Connection) -> JSON:
        await connection.message_broker.enqueue([message])
        return message.id

    return send


def _sync_sender(message: Message) -> Callable[[Connection], JSON]:
    def send(connection: Connection) -> JSON:
        connection.message_broker.enqueue_sync([message])
        return message.id

    return send


def _enqueued(task_result: TaskResult[..., Any], message: Message) -> None:
    object.__setattr__(task_result, "enqueued_at", stamp(message.enqueued_at))


def _sync[T](
    work: Callable[[Connection], Coroutine[Any, Any, T]],
    name: str,
    twin: str,
    sync: Callable[[Connection], T],
) -> T:
    """Run ``sync`` from sync code over the broker's sync client (``work`` on the engine's
    portal when the broker has no sync path); refuse async callers."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        connection = get_connection()
        if connection.message_broker.supports_sync:
            return sync(connection)
        return connection.call(lambda: work(connection))
    raise RuntimeError(
        f"{name}() was called from async code: use 'await ...{twin}()' there "
        "(it uses the engine's async path)"
    )
