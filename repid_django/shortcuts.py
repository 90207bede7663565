"""The Django-level API: the app-wide ``@actor``, enqueue-on-commit and the connection.

``@actor`` registers a function as an actor of the project (found by ``runworker`` like the
actors of a ``tasks.py`` router) and gives it typed enqueue helpers::

    from repid_django.shortcuts import actor

    @actor(queue="emails", retries=3)
    def send_welcome(user_id: int) -> None: ...

    send_welcome.enqueue(user_id=1)               # sync view: sent now
    await send_welcome.aenqueue(user_id=1)        # async view
    send_welcome.enqueue_on_commit(user_id=1)     # inside transaction.atomic()
    send_welcome.job(priority=PrioritiesT.HIGH, deferred_by=60).enqueue(user_id=1)
    send_welcome(1)                               # still a plain call

Arguments are checked against the function's signature when enqueued (a ``TypeError`` in the
view, not a failure in the worker) and must be JSON.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, overload

from django.db import transaction

from .engine.actor import Actor, ScheduleSpec
from .engine.connection import Call, Connection
from .engine.job import DEFAULT_TIMEOUT, Job
from .engine.priorities import PrioritiesT
from .engine.retry import RetryPolicyT
from .engine.serializer import JSON
from .worker.discovery import registry

__all__ = ["ActorFunction", "BoundJob", "actor", "enqueue_on_commit", "get_connection"]


def get_connection() -> Connection:
    """The process's default connection (built from ``settings.REPID``)."""
    from .connection import get_default_connection

    return get_default_connection()


def enqueue_on_commit(job: Job, using: str | None = None, robust: bool = False) -> None:
    """Send ``job`` once the transaction on database ``using`` commits; never if it rolls back.

    Outside a transaction (autocommit) it is sent at once. The arguments are checked now, so a
    non-JSON argument raises ``TypeError`` in the caller. ``robust=True`` logs a failed send
    instead of raising it from the commit (see :func:`django.db.transaction.on_commit`).
    """
    job.to_message()  # validates the arguments before anything is committed

    def send() -> None:
        job.enqueue()

    transaction.on_commit(send, using=using, robust=robust)


class BoundJob[**P]:
    """Enqueue options for one actor; call :meth:`enqueue` with the actor's arguments."""

    __slots__ = ("_actor", "_options", "_signature", "_using")

    def __init__(
        self,
        actor: Actor,
        signature: inspect.Signature | None,
        options: dict[str, Any],
        using: str | None = None,
    ) -> None:
        self._actor = actor
        self._signature = signature
        self._options = options
        self._using = using

    def build(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """The :class:`Job` for these arguments (checked against the function's signature)."""
        return Job(self._actor.name, args=self._arguments(args, kwargs), **self._options)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Call[str]:
        """Send now: plain call in sync code, ``await`` it in async code; gives the message id."""
        return self.build(*args, **kwargs).enqueue()

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Send from async code; returns the message id."""
        return await self.build(*args, **kwargs).enqueue()

    def enqueue_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Send when the current transaction commits (see :func:`enqueue_on_commit`)."""
        enqueue_on_commit(self.build(*args, **kwargs), using=self._using)

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> JSON:
        name = self._actor.name
        if self._signature is not None:
            try:
                bound = self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"actor {name!r}: {exc}") from None
            if args and kwargs:
                if any(
                    p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY)
                    for p in self._signature.parameters.values()
                ):
                    raise TypeError(
                        f"actor {name!r}: pass either positional or keyword arguments, not both "
                        "(its signature has positional-only or *args parameters)"
                    )
                return dict(bound.arguments)
        elif args and kwargs:
            raise TypeError(f"actor {name!r}: pass either positional or keyword arguments")
        if kwargs:
            return dict(kwargs)
        return list(args) if args else None


class ActorFunction[**P, R]:
    """A registered actor that is still callable like the function it wraps."""

    __name__: str
    __qualname__: str

    def __init__(self, fn: Callable[P, R], actor: Actor, **job_defaults: Any) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.actor = actor
        self.job_defaults = job_defaults
        try:
            self._signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            self._signature = None

    @property
    def name(self) -> str:
        return self.actor.name

    def __repr__(self) -> str:
        return f"<actor {self.actor.name!r} on queue {self.actor.queue!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def job(
        self,
        *,
        queue: str | None = None,
        priority: PrioritiesT | int | None = None,
        id_: str | None = None,
        retries: int | None = None,
        timeout: timedelta | float | None = None,
        deferred_until: datetime | float | None = None,
        deferred_by: timedelta | float | None = None,
        ttl: timedelta | float | None = None,
        store_result: bool | None = None,
        result_ttl: timedelta | float | None = None,
        using: str | None = None,
    ) -> BoundJob[P]:
        """Options for the next enqueue (``using``: the database alias for on-commit); an
        option left ``None`` keeps the actor's default."""
        given = {
            "queue": queue,
            "priority": priority,
            "id_": id_,
            "retries": retries,
            "timeout": timeout,
            "deferred_until": deferred_until,
            "deferred_by": deferred_by,
            "ttl": ttl,
            "store_result": store_result,
            "result_ttl": result_ttl,
        }
        options = dict(self.job_defaults)
        options.update({key: value for key, value in given.items() if value is not None})
        return BoundJob(self.actor, self._signature, options, using)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Call[str]:
        """Send now with the actor's defaults (``await`` it in async code)."""
        return self.job().enqueue(*args, **kwargs)

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Send from async code; returns the message id."""
        return await self.job().enqueue(*args, **kwargs)

    def enqueue_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Send when the transaction on the default database commits; use
        ``.job(using="other").enqueue_on_commit(...)`` for another alias."""
        self.job().enqueue_on_commit(*args, **kwargs)


@overload
def actor[**P, R](fn: Callable[P, R], /) -> ActorFunction[P, R]: ...


@overload
def actor[**P, R](
    fn: None = None,
    /,
    *,
    name: str | None = None,
    queue: str = "default",
    run_in_process: bool = False,
    retry_policy: RetryPolicyT | None = None,
    timeout: timedelta | float | None = None,
    retries: int = 0,
    priority: PrioritiesT | int = PrioritiesT.MEDIUM,
    store_result: bool | None = None,
    result_ttl: timedelta | float | None = None,
    schedule: ScheduleSpec | None = None,
    concurrency_limit: int | None = None,
    rate_limit: str | None = None,
    rate_limit_key: str | None = None,
) -> Callable[[Callable[P, R]], ActorFunction[P, R]]: ...


def actor[**P, R](
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str = "default",
    run_in_process: bool = False,
    retry_policy: RetryPolicyT | None = None,
    timeout: timedelta | float | None = None,
    retries: int = 0,
    priority: PrioritiesT | int = PrioritiesT.MEDIUM,
    store_result: bool | None = None,
    result_ttl: timedelta | float | None = None,
    schedule: ScheduleSpec | None = None,
    concurrency_limit: int | None = None,
    rate_limit: str | None = None,
    rate_limit_key: str | None = None,
) -> ActorFunction[P, R] | Callable[[Callable[P, R]], ActorFunction[P, R]]:
    """Register an actor of the project: ``@actor`` or ``@actor(name=..., queue=...)``.

    ``name``, ``queue``, ``run_in_process``, ``retry_policy`` and ``timeout`` are the actor's
    (as for ``@router.actor``); ``retries``, ``priority``, ``store_result`` and ``result_ttl``
    are the defaults of the jobs its helpers enqueue (``timeout`` too). As for
    :class:`~repid_django.engine.job.Job`, ``store_result=None`` (auto) keeps a result only
    when it is worth reading (not a ``None`` returned by a one-off job) and
    ``result_ttl=None`` keeps it for ``REPID["RESULT_TTL"]`` (an hour by default).
    ``schedule`` (a cron string, an interval, or a ``Schedule``) also runs it periodically;
    ``concurrency_limit``, ``rate_limit`` and ``rate_limit_key`` limit it across all workers.
    """

    def register(func: Callable[P, R]) -> ActorFunction[P, R]:
        built = Actor.build(
            func,
            name=name,
            queue=queue,
            run_in_process=run_in_process,
            retry_policy=retry_policy,
            timeout=timeout,
            schedule=schedule,
            concurrency_limit=concurrency_limit,
            rate_limit=rate_limit,
            rate_limit_key=rate_limit_key,
        )
        registry.shortcut_router.add_actor(built)
        registry.add(built, getattr(func, "__module__", "?"))
        return ActorFunction(
            func,
            built,
            queue=built.queue,
            retries=retries,
            priority=priority,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            store_result=store_result,
            result_ttl=result_ttl,
        )

    if fn is not None:
        return register(fn)
    return register
