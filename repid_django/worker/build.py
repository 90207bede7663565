"""The Django worker: the project's actors, wrapped for the ORM, run by an engine ``Worker``.

``runworker`` is a thin shell around :func:`build_worker`. Sync actors run in the worker's
thread pool between two ``close_old_connections()`` calls (like a Django request), so a
long-lived worker never uses a database connection that is broken or past ``CONN_MAX_AGE``.
``run_in_process`` actors are sent to the child process as a reference (module and name) that
sets Django up there first, so their module may import models. Async actors use the async ORM,
whose thread is cleaned at every heartbeat (:class:`DatabaseHygiene`).

This module does not import models at import time (child processes unpickle from it before
Django is set up).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import signal
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .. import conf
from ..engine.actor import Actor
from ..engine.connection import Connection
from ..engine.router import Router
from ..engine.schedules.scheduler import ScheduleSource
from ..engine.schedules.spec import Schedule
from ..engine.worker.events import JobEvent, WorkerInfo, WorkerListener
from ..engine.worker.signals import DEFAULT_SIGNALS
from ..engine.worker.worker import Worker


def _close_old_connections() -> None:
    from django.db import close_old_connections

    close_old_connections()


def with_db_hygiene(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` between two ``close_old_connections()`` calls (for the worker's threads)."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        _close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            _close_old_connections()

    return call


class ChildCall:
    """A picklable reference to a sync actor for ``run_in_process``.

    In the child it sets Django up (``DJANGO_SETTINGS_MODULE`` is inherited), imports the
    function by module and qualified name (unwrapping an ``@actor`` helper), and calls it
    between two ``close_old_connections()``.
    """

    __slots__ = ("module", "qualname")

    def __init__(self, module: str, qualname: str) -> None:
        self.module = module
        self.qualname = qualname

    def __repr__(self) -> str:
        return f"ChildCall({self.module}.{self.qualname})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (ChildCall, (self.module, self.qualname))

    def resolve(self) -> Callable[..., Any]:
        target: Any = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            target = getattr(target, part)
        from ..shortcuts import ActorFunction

        return target.fn if isinstance(target, ActorFunction) else target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import django
        from django.apps import apps

        if not apps.ready:
            django.setup()
        return with_db_hygiene(self.resolve())(*args, **kwargs)


def for_django(actor: Actor) -> Actor:
    """The actor as the Django worker runs it (see the module docstring)."""
    if actor.is_async:
        return actor
    fn = actor.fn
    if actor.run_in_process:
        module = getattr(fn, "__module__", None)
        qualname = getattr(fn, "__qualname__", "")
        if not module or not qualname or "<locals>" in qualname:
            return actor  # not importable by name: the engine pickles it as it is
        return dataclasses.replace(actor, fn=ChildCall(module, qualname))
    return dataclasses.replace(actor, fn=with_db_hygiene(fn))


class DatabaseHygiene:
    """Closes stale connections of the async ORM's thread at every heartbeat."""

    async def on_events(self, events: Sequence[JobEvent]) -> None:
        return None

    async def on_heartbeat(self, info: WorkerInfo) -> None:
        from asgiref.sync import sync_to_async

        await sync_to_async(_close_old_connections)()


def django_router(source: Router | None = None, *, keep_schedules: bool = True) -> Router:
    """A router with the project's actors (or ``source``'s) wrapped by :func:`for_django`;
    without their own schedules when ``keep_schedules`` is false (the worker then gets them
    from its ``schedules=``, where the admin can disable them)."""
    from ..tasks_backend.routing import task_router
    from .discovery import project_router

    router = Router()
    for actor in [*(source or project_router()).actors.values(), *task_router().actors.values()]:
        wrapped = for_django(actor)
        if not keep_schedules and wrapped.schedule is not None:
            wrapped = dataclasses.replace(wrapped, schedule=None)
        router.add_actor(wrapped)
    return router


def build_worker(
    *,
    queues: Iterable[str] | None = None,
    concurrency: int | None = None,
    messages_limit: float = math.inf,
    burst: bool = False,
    graceful_shutdown_time: float | None = None,
    handle_signals: Sequence[signal.Signals] = DEFAULT_SIGNALS,
    mirror: bool | None = None,
    connection: Connection | None = None,
    router: Router | None = None,
    heartbeat_interval: float = 5.0,
    listeners: Iterable[WorkerListener] = (),
    schedules: ScheduleSource | Sequence[Schedule] | None = None,
    metrics: bool = True,
) -> Worker:
    """A worker for the project's actors, configured from ``settings.REPID``.

    Arguments that are ``None`` come from the settings (``queues``: ``REPID["QUEUES"]``, else
    every queue the actors listen on). Without ``connection`` the worker gets a connection of
    its own (the process's default one may already serve views on another event loop); run it
    inside ``Repid(connection).magic()`` so that actors enqueue over it too.

    ``schedules``: what the worker fires, in place of its actors' own schedules: a source such
    as :func:`~repid_django.worker.schedules.database_source` (``runworker``'s: every row of
    the schedule table, read every two seconds) or a list. ``None``: the actors' own.
    ``REPID["QUEUE_LIMITS"]`` are set on the broker when the worker starts. ``metrics``: count
    job events for Prometheus (:class:`~repid_django.metrics.listener.MetricsListener`).
    """
    from ..connection import build_connection

    settings = conf.get_settings()
    conn = connection or build_connection(settings)
    chosen: list[WorkerListener] = [DatabaseHygiene(), *listeners]
    if settings.mirror if mirror is None else mirror:
        from ..mirror.listener import OrmMirror

        chosen.append(OrmMirror(conn.message_broker, flush_interval=settings.mirror_flush_interval))
    selected = list(queues) if queues else (list(settings.queues) if settings.queues else None)
    routed = django_router(router, keep_schedules=schedules is None)
    if metrics:
        from ..metrics.listener import MetricsListener

        chosen.insert(0, MetricsListener(actors=routed.actors))  # before the mirror's pauses
    if selected is None:
        from ..tasks_backend.routing import task_queues

        extra = task_queues()  # the QUEUES of django.tasks backends (TASKS)
        selected = sorted(set(routed.queues) | extra) if extra else None
    return Worker(
        routers=[routed],
        graceful_shutdown_time=(
            settings.graceful_shutdown_time
            if graceful_shutdown_time is None
            else graceful_shutdown_time
        ),
        messages_limit=messages_limit,
        handle_signals=handle_signals,
        concurrency=concurrency or settings.concurrency,
        queues=selected,
        listeners=chosen,
        burst=burst,
        connection=conn,
        heartbeat_interval=heartbeat_interval,
        schedules=schedules,
        queue_limits=settings.queue_limits,
    )
