"""``django.tasks`` tasks of the test app (run by the Repid task backend)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from django.tasks import TaskContext, task


class TaskBoom(Exception):
    """The error :func:`explode` raises."""


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@task
def explode(message: str) -> None:
    raise TaskBoom(message)


@task
async def adouble(n: int) -> int:
    await asyncio.sleep(0)
    return n * 2


@task(takes_context=True)
def whoami(context: TaskContext[Any, Any], tag: str) -> dict[str, Any]:
    result = context.task_result
    return {
        "id": result.id,
        "attempt": context.attempt,
        "status": str(result.status),
        "tag": tag,
        "queue": result.task.queue_name,
    }


@task(takes_context=True)
async def awhoami(context: TaskContext[Any, Any]) -> str:
    return context.task_result.id


@task
async def asleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@task(queue_name="other")
def on_other(tag: str) -> str:
    return f"other:{tag}"


gate = threading.Event()
"""Opened by the tests to let :func:`blocked` finish."""


@task
def blocked() -> str:
    if not gate.wait(10):
        raise TimeoutError("the test never opened the gate")
    return "opened"
