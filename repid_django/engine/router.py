"""Routers collect actors; workers are routers too."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, overload

from .actor import Actor, ScheduleSpec
from .retry import RetryPolicyT
from .schedules.spec import Schedule

F = TypeVar("F", bound=Callable[..., Any])


class Router:
    """A set of actors by name. ``@router.actor`` registers a function and returns it unchanged.

    Registering a name that already exists replaces the earlier actor.
    """

    def __init__(self) -> None:
        self.actors: dict[str, Actor] = {}

    @overload
    def actor(self, fn: F, /) -> F: ...

    @overload
    def actor(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        run_in_process: bool = False,
        retry_policy: RetryPolicyT | None = None,
        timeout: timedelta | float | None = None,
        schedule: ScheduleSpec | None = None,
        concurrency_limit: int | None = None,
        rate_limit: str | None = None,
        rate_limit_key: str | None = None,
    ) -> Callable[[F], F]: ...

    def actor(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        run_in_process: bool = False,
        retry_policy: RetryPolicyT | None = None,
        timeout: timedelta | float | None = None,
        schedule: ScheduleSpec | None = None,
        concurrency_limit: int | None = None,
        rate_limit: str | None = None,
        rate_limit_key: str | None = None,
    ) -> F | Callable[[F], F]:
        """Register an actor: ``@router.actor`` or ``@router.actor(name=..., queue=...)``."""

        def register(func: F) -> F:
            self.add_actor(
                Actor.build(
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
            )
            return func

        if fn is not None:
            return register(fn)
        return register

    def add_actor(self, actor: Actor) -> None:
        self.actors[actor.name] = actor

    def include_router(self, router: Router) -> None:
        """Add every actor of ``router`` (same names replace earlier ones)."""
        for actor in router.actors.values():
            self.add_actor(actor)

    @property
    def queues(self) -> list[str]:
        """The queues this router's actors listen on, sorted."""
        return sorted({actor.queue for actor in self.actors.values()})

    @property
    def schedules(self) -> list[Schedule]:
        """The schedules of this router's actors (``@actor(schedule=...)``)."""
        return [a.schedule for a in self.actors.values() if a.schedule is not None]
