"""What ``runworker`` adds for ``django.tasks``: the two task actors and the backends' queues,
when ``settings.TASKS`` uses the Repid backend."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from ..engine.router import Router
from .backend import RepidTaskBackend
from .payload import ASYNC_ACTOR, SYNC_ACTOR
from .worker import run_async_task, run_sync_task


def configured_backends() -> list[dict[str, Any]]:
    """The ``TASKS`` entries whose backend is the Repid one (or a subclass)."""
    found = []
    for params in getattr(settings, "TASKS", {}).values():
        backend = params.get("BACKEND")
        try:
            cls = import_string(backend) if isinstance(backend, str) else backend
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, RepidTaskBackend):
            found.append(params)
    return found


def task_router() -> Router:
    """The generic task actors, when ``TASKS`` uses the Repid backend (else an empty router)."""
    router = Router()
    if configured_backends():
        router.actor(name=SYNC_ACTOR)(run_sync_task)
        router.actor(name=ASYNC_ACTOR)(run_async_task)
    return router


def task_queues() -> set[str]:
    """Queues named by the ``QUEUES`` of every Repid task backend (``runworker``'s default)."""
    queues: set[str] = set()
    for params in configured_backends():
        queues.update(params.get("QUEUES", ["default"]))
    return queues
