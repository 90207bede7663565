"""What the backend, the worker and the result reader share: the job's payload and the tasks.

A Django task is sent as a job of the actor :data:`SYNC_ACTOR` (sync functions) or
:data:`ASYNC_ACTOR` (coroutine functions) whose keyword arguments are the :class:`Payload`. The
result id is the job's message id, ``"<queue>:<uuid hex>"`` (:func:`queue_of` reads it back).

The payload names its task by dotted path, and that path comes back from the broker (or from a
stored traceback), so it is never imported: a path is only resolved to a task this process
already knows (:func:`known_task`). The backend registers every task declared for it
(``@task`` calls ``validate_task``), and ``AppConfig.ready()`` imports every installed app's
``tasks.py``, so the tasks of those modules, and of any module they import, are known.
"""

from __future__ import annotations

from typing import Any, TypedDict

from django.tasks import Task

from ..engine.results import stamp
from ..engine.serializer import JSON

type AnyTask = Task[..., Any]

SYNC_ACTOR = "django.tasks"
ASYNC_ACTOR = "django.tasks.async"
NOTE_PREFIX = "[django.tasks]"
"""Start of the note added to a failed task's exception (parsed back by ``get_result``)."""


class Payload(TypedDict):
    """The keyword arguments of a Django task's job (all JSON)."""

    id: str
    task: str
    args: list[JSON]
    kwargs: dict[str, JSON]
    backend: str
    priority: int
    run_after: float | None
    enqueued_at: float


class UnknownTask(ValueError):
    """A payload names a task path that this process does not know (nothing was imported)."""


def queue_of(result_id: str) -> str | None:
    """The queue of a result id ``"<queue>:<uuid hex>"``; ``None`` when it is not one."""
    queue, _, uid = result_id.rpartition(":")
    return queue if queue and uid else None


_tasks: dict[str, AnyTask] = {}


def register(task: AnyTask) -> None:
    """Know ``task`` by its dotted path (the first one declared at a path stays)."""
    _tasks.setdefault(task.module_path, task)


def known_task(path: str) -> AnyTask:
    """The registered task at ``path``; :class:`UnknownTask` otherwise (nothing is imported)."""
    task = _tasks.get(path)
    if task is None:
        raise UnknownTask(
            f"{path!r} is not a django task known to this process, so it is not run (paths "
            "from the broker are never imported): declare it with @task in the tasks.py of an "
            "installed app, or in a module that one imports"
        )
    return task


def task_for(payload: Payload, queue: str) -> AnyTask:
    """The task of ``payload`` with the options it was enqueued with."""
    task = known_task(payload["task"])
    changes: dict[str, Any] = {
        "priority": payload["priority"],
        "queue_name": queue,
        "backend": payload["backend"],
    }
    if payload["run_after"] is not None:
        changes["run_after"] = stamp(payload["run_after"])
    return task.using(**changes)
