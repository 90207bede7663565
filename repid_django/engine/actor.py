"""Actors: the functions a worker runs for jobs of the same name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .limits import NO_LIMITS, LimitError, Limits
from .queue import validate_queue_name
from .retry import RetryPolicyT, default_retry_policy
from .schedules.spec import Schedule, ScheduleError

ScheduleSpec = str | timedelta | float | Schedule
"""``@actor(schedule=...)``: a cron string, an interval (timedelta or seconds) or a Schedule."""

if TYPE_CHECKING:
    from .message import Message


@dataclass(frozen=True, slots=True)
class Actor:
    """An actor: ``fn`` called for jobs named ``name`` on ``queue``.

    ``timeout`` (seconds), when set, caps the job's own timeout. Sync functions run in the
    worker's thread pool, or in its process pool with ``run_in_process=True``. ``schedule``:
    the actor also runs periodically (a :class:`~.schedules.Schedule` named after the actor).
    ``limits``: at most ``concurrency_limit`` runs at once and ``rate_limit`` starts per window
    across all workers (see :mod:`.limits`).
    """

    name: str
    fn: Callable[..., Any]
    queue: str = "default"
    run_in_process: bool = False
    retry_policy: RetryPolicyT = default_retry_policy
    timeout: float | None = None
    schedule: Schedule | None = None
    limits: Limits = NO_LIMITS

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def timeout_for(self, message: Message) -> float:
        """Seconds a run of ``message`` may take: its own timeout, capped by the actor's."""
        if self.timeout is not None and self.timeout < message.timeout:
            return self.timeout
        return message.timeout

    @classmethod
    def build(
        cls,
        fn: Callable[..., Any],
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
    ) -> Actor:
        if not callable(fn):
            raise TypeError(f"an actor must be a function, got {fn!r}")
        actor_name = name or getattr(fn, "__name__", None)
        if not actor_name or not isinstance(actor_name, str):
            raise ValueError(f"cannot name the actor for {fn!r}: pass name=")
        if retry_policy is not None and not callable(retry_policy):
            raise TypeError("retry_policy must be callable(retry_number) -> seconds")
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        if seconds is not None and seconds <= 0:
            raise ValueError(f"actor {actor_name!r}: timeout must be positive, got {timeout!r}")
        if run_in_process and inspect.iscoroutinefunction(fn):
            raise ValueError(
                f"actor {actor_name!r}: run_in_process=True is for sync functions; "
                "async actors run on the worker's event loop"
            )
        return cls(
            name=actor_name,
            fn=fn,
            queue=validate_queue_name(queue),
            run_in_process=run_in_process,
            retry_policy=retry_policy or default_retry_policy,
            timeout=None if seconds is None else float(seconds),
            schedule=None if schedule is None else as_schedule(schedule, actor_name, queue),
            limits=_limits(actor_name, concurrency_limit, rate_limit, rate_limit_key),
        )


def as_schedule(spec: ScheduleSpec, actor: str, queue: str) -> Schedule:
    """The schedule of ``@actor(schedule=spec)``: named after the actor, on its queue."""
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        return Schedule(name=actor, actor=actor, cron=spec, queue=queue)
    if isinstance(spec, timedelta | int | float) and not isinstance(spec, bool):
        return Schedule(name=actor, actor=actor, every=spec, queue=queue)
    raise ScheduleError(
        f"actor {actor!r}: schedule must be a cron string, an interval (timedelta or seconds) "
        f"or a Schedule, got {spec!r}"
    )


def _limits(actor: str, concurrency: int | None, rate: str | None, key: str | None) -> Limits:
    if concurrency is None and rate is None and key is None:
        return NO_LIMITS
    try:
        return Limits(concurrency, rate, key)
    except LimitError as exc:
        raise LimitError(f"actor {actor!r}: {exc}") from None
