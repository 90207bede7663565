"""Reading a Django task's state back from Redis and mapping it to a ``TaskResult``.

A result id is ``"<queue>:<uuid hex>"`` and is the job's message id, so one read-only script
on the queue's keys (the broker's ``peek``: one Redis Cluster slot, one instant) tells
everything:

* a stored result: ``SUCCESSFUL`` (the actor's envelope holds the return value, the task and
  its arguments) or ``FAILED`` (the traceback, with the note the actor added);
* else the live message body: ``RUNNING`` while a worker holds its lease, ``READY`` before
  (waiting or deferred);
* else a dead letter with no result (the worker was lost, the run expired ...): ``FAILED``;
* else nothing (never enqueued, or its result expired after ``RESULT_TTL``, an hour by
  default): ``TaskResultDoesNotExist``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

from django.tasks import TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.exceptions import TaskResultDoesNotExist

from ..engine.brokers.redis.broker import RedisMessageBroker
from ..engine.connection import Connection
from ..engine.message import MessageDecodeError, decode
from ..engine.results import JobResult, stamp
from ..engine.serializer import loads
from .payload import NOTE_PREFIX, Payload, queue_of, task_for

_NOTE = re.compile(
    rf"^{re.escape(NOTE_PREFIX)} task=(?P<task>\S+) worker=(?P<worker>\S+) "
    r"exception=(?P<exception>\S+)$",
    re.MULTILINE,
)
_LAST_LINE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(?::|$)")


class TaskLost(Exception):
    """A task that ended without a result of its own (its worker was lost, it expired, or no
    worker knew it); the error text says which."""


@dataclass(frozen=True, slots=True)
class Found:
    """What Redis holds about one result id."""

    result: JobResult | None
    body: bytes | None
    running: bool
    dead_body: bytes | None
    dead_info: bytes | None


def split_id(result_id: str) -> str:
    """The queue of ``result_id``; ``TaskResultDoesNotExist`` when it is not one of ours."""
    queue = queue_of(result_id)
    if queue is None:
        raise TaskResultDoesNotExist(result_id)
    return queue


async def fetch(connection: Connection, result_id: str) -> Found:
    """One round trip: result, body, lease and dead letter of ``result_id``."""
    queue = split_id(result_id)
    broker = connection.message_broker
    if not isinstance(broker, RedisMessageBroker):
        results = connection.results_broker
        result = None if results is None else await results.get_result(result_id, queue)
        return Found(result, None, False, None, None)
    return _found(await broker.peek(queue, result_id))


def fetch_sync(connection: Connection, result_id: str) -> Found:
    """:func:`fetch` for sync code, over the broker's sync connection (Redis only)."""
    broker = connection.message_broker
    assert isinstance(broker, RedisMessageBroker)
    return _found(broker.peek_sync(split_id(result_id), result_id))


def _found(replies: list[Any]) -> Found:
    raw, body, lease, dead_body, dead_info = (reply or None for reply in replies)
    result = None if raw is None else JobResult.from_dict(loads(raw))
    return Found(result, body, lease is not None, dead_body, dead_info)


def _payload(body: bytes | None) -> Payload | None:
    if body is None:
        return None
    try:
        args = decode(body).args
    except MessageDecodeError:
        return None
    return cast(Payload, args) if isinstance(args, dict) and "task" in args else None


def error_of(text: str) -> tuple[TaskError, str | None, str | None]:
    """The ``TaskError`` of a stored traceback, and the task path and worker id of its note."""
    notes = list(_NOTE.finditer(text))
    if notes:
        note = notes[-1]
        return (
            TaskError(exception_class_path=note["exception"], traceback=text),
            note["task"],
            note["worker"],
        )
    name = "builtins.Exception"
    for line in reversed(text.splitlines()):
        match = _LAST_LINE.match(line)
        if match and not line.startswith(("Traceback", " ")):
            found = match["name"]
            name = found if "." in found else f"builtins.{found}"
            break
    return TaskError(exception_class_path=name, traceback=text), None, None


def to_task_result(result_id: str, found: Found, alias: str) -> TaskResult[..., Any]:
    """Map what :func:`fetch` found to Django's ``TaskResult``."""
    queue = split_id(result_id)
    stored = found.result
    payload = _payload(found.body) or _payload(found.dead_body)
    errors: list[TaskError] = []
    worker_ids: list[str] = []
    value: Any = None
    if stored is not None and stored.success:
        envelope = stored.data if isinstance(stored.data, dict) else {}
        payload = payload or cast(Payload, envelope)
        value = envelope.get("return_value")
        worker_ids = [str(envelope["worker_id"])] if envelope.get("worker_id") else []
        status = TaskResultStatus.SUCCESSFUL
    elif stored is not None:
        error, path, worker = error_of(stored.exception or "")
        errors = [error]
        worker_ids = [worker] if worker else []
        if payload is None and path is not None:
            payload = _bare_payload(result_id, path, alias, stored)
        status = TaskResultStatus.FAILED
    elif found.body is not None:
        status = TaskResultStatus.RUNNING if found.running else TaskResultStatus.READY
    elif found.dead_info is not None:
        info = loads(found.dead_info)
        reason = info.get("reason", "failed") if isinstance(info, dict) else "failed"
        detail = info.get("error") if isinstance(info, dict) else None
        text = f"{__name__}.TaskLost: the task ended without a result ({reason})"
        errors = [
            TaskError(
                exception_class_path=f"{__name__}.TaskLost",
                traceback=f"{text}: {detail}" if detail else text,
            )
        ]
        status = TaskResultStatus.FAILED
    else:
        raise TaskResultDoesNotExist(result_id)
    if payload is None or "task" not in payload:
        raise TaskResultDoesNotExist(
            f"{result_id}: its job holds no django task (was it sent by another API?)"
        )
    task = task_for(payload, queue)
    started = None if stored is None else stored.started_when
    task_result: TaskResult[..., Any] = TaskResult(
        task=task,
        id=result_id,
        status=status,
        enqueued_at=stamp(payload.get("enqueued_at")),
        started_at=started,
        finished_at=None if stored is None else stored.finished_when,
        last_attempted_at=started,
        args=list(payload.get("args") or []),
        kwargs=dict(payload.get("kwargs") or {}),
        backend=alias,
        errors=errors,
        worker_ids=worker_ids,
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(task_result, "_return_value", value)
    return task_result


def _bare_payload(result_id: str, path: str, alias: str, stored: JobResult) -> Payload:
    """A failed task whose message is gone (its dead letter was purged): arguments unknown."""
    return Payload(
        id=result_id,
        task=path,
        args=[],
        kwargs={},
        backend=alias,
        priority=0,
        run_after=None,
        enqueued_at=stored.started_when.timestamp(),
    )
