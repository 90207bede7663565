"""Jobs: what to run, where, how often and how patiently."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from . import tracing
from .brokers.base import ResultBroker
from .connection import Call, Connection, run_anywhere
from .message import MAX_COUNT, MAX_SECONDS, Message, new_id, new_ids, new_message
from .priorities import PrioritiesT, validate_priority
from .queue import Queue
from .results import DEFAULT_RESULT_TTL_SECONDS, JobResult
from .schedules.spec import Schedule
from .serializer import JSON, check_json, is_plain_flat

DEFAULT_TIMEOUT = timedelta(minutes=10)
DEFAULT_RESULT_TTL = timedelta(seconds=DEFAULT_RESULT_TTL_SECONDS)
"""How long brokers keep a result by default (an hour): ``RESULT_TTL`` in the Django settings,
``result_ttl`` of :class:`~.brokers.redis.RedisMessageBroker`. A job's own ``result_ttl``
overrides it."""
_DEFAULT_TIMEOUT_S = DEFAULT_TIMEOUT.total_seconds()
_MEDIUM = PrioritiesT.MEDIUM


def _seconds(
    value: timedelta | float | None, name: str, *, allow_zero: bool = False
) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"{name} must be a timedelta or a number of seconds, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero) or not seconds <= MAX_SECONDS:
        raise ValueError(
            f"{name} must be a positive duration of at most {MAX_SECONDS} seconds (about 317 "
            f"years), got {value!r}"
        )
    return float(seconds)


class Job:
    """A description of work: the actor ``name`` to call and how.

    ``args`` are the actor's arguments: a dict of keyword arguments or a list of positional
    ones, JSON only (checked at enqueue). Without ``id_`` every ``enqueue()`` creates a new
    message id; with it the job is unique while queued or running.
    ``deferred_until`` delays the first run; ``deferred_by`` delays it too and then repeats the
    job at that interval (recurring). ``ttl`` drops a run that has not started in time.

    ``cron`` (with ``tz``, an IANA zone): the job repeats on that cron schedule instead; see
    :meth:`enqueue` and :class:`~.schedules.Schedule`.

    ``store_result``: ``None`` (auto, the default) keeps a result when it is worth reading (a
    failure, a return value other than ``None``, any run of a recurring job), ``True`` keeps
    every run's, ``False`` none. ``result_ttl`` is how long it is kept; ``None`` (the default)
    leaves it to the broker (``RESULT_TTL``, an hour unless configured).
    """

    __slots__ = (
        "_connection",
        "args",
        "deferred_by",
        "deferred_until",
        "id_",
        "last_id",
        "name",
        "priority",
        "queue",
        "result_ttl",
        "retries",
        "schedule",
        "store_result",
        "timeout",
        "ttl",
    )

    def __init__(  # noqa: PLR0917 - the seeds' signature
        self,
        name: str,
        queue: str | Queue = "default",
        priority: PrioritiesT | int = PrioritiesT.MEDIUM,
        id_: str | None = None,
        args: dict[str, JSON] | Sequence[JSON] | None = None,
        retries: int = 0,
        timeout: timedelta | float = DEFAULT_TIMEOUT,
        deferred_until: datetime | float | None = None,
        deferred_by: timedelta | float | None = None,
        ttl: timedelta | float | None = None,
        store_result: bool | None = None,
        result_ttl: timedelta | float | None = None,
        *,
        connection: Connection | None = None,
        cron: str | None = None,
        tz: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"Job name must be a non-empty str (the actor's name), got {name!r}")
        self.name = name
        self.queue = queue if isinstance(queue, Queue) else Queue(queue)
        self.priority = 0 if priority is _MEDIUM else validate_priority(priority)
        if id_ is not None and (not isinstance(id_, str) or not id_ or len(id_) > 200):
            raise ValueError(f"id_ must be a non-empty str of at most 200 chars, got {id_!r}")
        self.id_ = id_
        if args is not None and not isinstance(args, dict | list | tuple):
            raise TypeError(
                f"args must be a dict of keyword arguments or a list of positional ones, "
                f"got {type(args).__name__}"
            )
        self.args = list(args) if isinstance(args, tuple) else args
        if (
            isinstance(retries, bool)
            or not isinstance(retries, int)
            or not 0 <= retries <= MAX_COUNT
        ):
            raise ValueError(f"retries must be an int from 0 to 2**63 - 1, got {retries!r}")
        self.retries = retries
        if timeout is DEFAULT_TIMEOUT:
            self.timeout = _DEFAULT_TIMEOUT_S
        else:
            self.timeout = _seconds(timeout, "timeout") or _DEFAULT_TIMEOUT_S
        if isinstance(deferred_until, datetime):
            self.deferred_until: float | None = deferred_until.timestamp()
        elif deferred_until is None or (
            isinstance(deferred_until, int | float) and not isinstance(deferred_until, bool)
        ):
            self.deferred_until = None if deferred_until is None else float(deferred_until)
        else:
            raise TypeError(
                f"deferred_until must be a datetime or a timestamp, got {deferred_until!r}"
            )
        self.deferred_by = None if deferred_by is None else _seconds(deferred_by, "deferred_by")
        self.ttl = None if ttl is None else _seconds(ttl, "ttl")
        self.store_result = None if store_result is None else bool(store_result)
        self.result_ttl = None if result_ttl is None else _seconds(result_ttl, "result_ttl")
        self._connection = connection
        self.last_id: str | None = id_
        self.schedule: Schedule | None = None
        if cron is not None:
            if deferred_until is not None or deferred_by is not None:
                raise ValueError(
                    f"job {name!r}: cron= repeats the job on its own; drop deferred_until "
                    "and deferred_by (or use deferred_by alone for a fixed interval)"
                )
            args_json: JSON = self.args
            self.schedule = Schedule(
                name=id_ or name,
                actor=name,
                cron=cron,
                tz=tz,
                args=args_json,
                queue=self.queue.name,
                priority=self.priority,
                source="job",
            )

    def __repr__(self) -> str:
        return f"Job(name={self.name!r}, queue={self.queue.name!r}, priority={self.priority})"

    @property
    def is_unique(self) -> bool:
        """True when the job has a fixed ``id_`` (it is not duplicated while queued)."""
        return self.id_ is not None

    def to_message(self, now: float | None = None) -> Message:
        """Build the next message of this job (checks the arguments: ``TypeError`` if not JSON)."""
        return self._message(time.time() if now is None else now, self.id_ or new_id())

    def _message(self, now: float, message_id: str) -> Message:
        args = self.args
        if args is not None and not is_plain_flat(args):
            self._check_args(args)
        run_at = self.deferred_until
        if run_at is None and self.deferred_by is not None:
            run_at = now + self.deferred_by
        return new_message(
            message_id,
            self.name,
            self.queue.name,
            self.priority,
            args,
            self.retries,
            self.timeout,
            self.ttl,
            run_at,
            self.deferred_by,
            self.store_result,
            self.result_ttl,
            self.id_ is not None,
            now,
        )

    def _check_args(self, args: dict[str, JSON] | Sequence[JSON]) -> None:
        if isinstance(args, dict):
            for key in args:
                if not isinstance(key, str):
                    raise TypeError(f"args key {key!r} of job {self.name!r} must be a str")
        items: Iterable[tuple[object, JSON]] = (
            args.items() if isinstance(args, dict) else enumerate(args)
        )
        for place, value in items:
            try:
                check_json(value, f"args[{place!r}]", level=2)
            except TypeError as exc:
                raise TypeError(f"job {self.name!r}: {exc}") from None

    def enqueue(self) -> Call[str]:
        """Send one run of this job; the :class:`Call` resolves to the message id.

        ``await job.enqueue()`` in async code; plain ``job.enqueue()`` in sync code (a Django
        view), which sends at once over this thread's sync connection (no event loop).

        A job made with ``cron=`` is not sent: its schedule (named ``id_``, else the job's
        name) is kept in the broker, every worker fires it from then on (each tick once), and
        the call resolves to the schedule's name. ``connection.message_broker
        .remove_schedule(name)`` stops it.
        """
        if self.schedule is not None:
            return _keep(self.schedule, self._connection)
        message = self.to_message()
        self.last_id = message.id
        return _send([message], message.id, self._connection)

    @property
    def result(self) -> Call[JobResult | None]:
        """The result of the last enqueued run: ``await job.result`` (``job.result.value`` in
        sync code); ``None`` while it waits, runs or will be retried.

        A job that ended without a stored result still gets one, with ``stored=False``: a
        failure rebuilt from its dead letter when it was dead-lettered, else a success with no
        data (its run returned ``None`` and it stores results only when useful; an expired
        result, a cancelled message or an id never sent read the same, see
        :func:`~.results.unstored`). One round trip either way. With a separate results
        broker this is the stored result or ``None``: auto jobs are sent with
        ``store_result=True`` there.
        """
        job_id = self.last_id
        if job_id is None:
            raise RuntimeError(f"job {self.name!r} has not been enqueued yet: no result to fetch")

        queue = self.queue.name
        name = self.name

        async def work(connection: Connection) -> JobResult | None:
            results = _results(connection)
            if connection.results_apart:
                return await results.get_result(job_id, queue)
            return _named(await results.job_result(job_id, queue), name)

        def sync(connection: Connection) -> JobResult | None:
            results = _results(connection)
            if connection.results_apart:
                return results.get_result_sync(job_id, queue)
            return _named(results.job_result_sync(job_id, queue), name)

        return run_anywhere(work, self._connection, sync, sync_on="results")


def enqueue_many(jobs: Sequence[Job], connection: Connection | None = None) -> Call[list[str]]:
    """Send one run of each job in a single broker round trip; resolves to their message ids."""
    ids = new_ids(len(jobs))
    clock = time.time
    messages = [job._message(clock(), job.id_ or ids[i]) for i, job in enumerate(jobs)]
    for job, message in zip(jobs, messages, strict=True):
        job.last_id = message.id
    return _send(messages, [message.id for message in messages], connection)


def _send[T](messages: Sequence[Message], reply: T, connection: Connection | None) -> Call[T]:
    """Enqueue ``messages`` from sync or async code; the call resolves to ``reply``.

    Over a connection whose results live in another broker, auto ``store_result`` is sent as
    ``True``: the worker stores those results after the message is gone, so a lookup could not
    tell "ended with nothing stored" from "stored in a moment".
    """

    if tracing.enabled():  # OpenTelemetry configured: each message carries its trace context
        messages = tracing.traced(messages)

    async def work(conn: Connection) -> T:
        await conn.message_broker.enqueue(_storing(messages) if conn.results_apart else messages)
        return reply

    def sync(conn: Connection) -> T:
        conn.message_broker.enqueue_sync(_storing(messages) if conn.results_apart else messages)
        return reply

    return run_anywhere(work, connection, sync)


def _keep(schedule: Schedule, connection: Connection | None) -> Call[str]:
    """Save ``schedule`` in the broker, from sync or async code; resolves to its name."""
    data = schedule.to_dict()
    data["every"] = schedule.interval

    async def work(conn: Connection) -> str:
        await conn.message_broker.save_schedule(schedule.name, data)
        return schedule.name

    def sync(conn: Connection) -> str:
        save = getattr(conn.message_broker, "save_schedule_sync", None)
        if save is None:
            return conn.call(lambda: work(conn))
        save(schedule.name, data)
        return schedule.name

    return run_anywhere(work, connection, sync)


def _storing(messages: Sequence[Message]) -> list[Message]:
    """``messages`` with auto ``store_result`` made ``True``."""
    return [
        m if m.store_result is not None else m.with_changes(store_result=True) for m in messages
    ]


def _named(result: JobResult | None, actor: str) -> JobResult | None:
    """A result rebuilt without its actor's name gets the job's."""
    if result is None or result.actor:
        return result
    return dataclasses.replace(result, actor=actor)


def _results(connection: Connection) -> ResultBroker:
    if connection.results_broker is None:
        raise RuntimeError("this connection has no results broker")
    return connection.results_broker
