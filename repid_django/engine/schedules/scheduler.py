"""The scheduler every worker runs: it fires each due tick of each schedule, once in all.

There is no beat process and no leader. Every worker computes the same ticks from the same
schedules and asks the broker to fire them; the broker records the last tick handled per
schedule and enqueues a tick's job only when that tick is later (one Lua script on Redis:
:mod:`..brokers.redis.schedules`), so any number of workers racing enqueue one job per tick,
and losing a worker, any worker, never delays a tick: the others fire it on time.

A tick's job has a deterministic id, ``sched:<name>:<tick in ms>``, so even a job of a tick
re-fired by hand is not queued twice while the first one waits.

Missed ticks (every worker was down, or a deploy): when a worker finds ticks between the last
one handled and now, the schedule's ``missed`` policy decides: ``"skip"`` enqueues only a tick
that is at most :data:`~.spec.ON_TIME` seconds late, ``"once"`` one job for all of them (the
latest tick's), ``"all"`` one per tick (the latest :data:`~.spec.CATCH_UP_MAX`). A schedule seen
for the first time starts from now (nothing before it is due); a disabled one keeps marking its
ticks handled without enqueueing, so enabling it again does not fire a backlog.

Edits (a schedule source that returns new definitions) take effect at the next refresh (every
``refresh`` seconds): ticks are computed from the last one handled, so an edit never fires a
tick twice and never drops the one that was due.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..message import Message
from .spec import ON_TIME, Schedule, ScheduleError

if TYPE_CHECKING:
    from ..brokers.base import MessageBroker

logger = logging.getLogger("repid_django.schedules")

ScheduleSource = Callable[[], Awaitable[Sequence[Schedule]]]
"""An async callable returning the current schedules (read again every ``refresh`` seconds)."""
Fired = Callable[[Schedule, float, str], Awaitable[None] | None]
"""Called with (schedule, tick, job id) by the worker that enqueued a tick's job."""

REFRESH = 2.0
"""Seconds between two reads of the schedule source (how soon an edit takes effect)."""
RETRY_DELAY = 1.0
"""Seconds before trying again after the broker failed."""


def tick_id(schedule: str, tick: float) -> str:
    """The id of the job of ``schedule``'s tick at ``tick`` (Unix seconds)."""
    return f"sched:{schedule}:{round(tick * 1000)}"


def tick_message(schedule: Schedule, tick: float, now: float | None = None) -> Message:
    """The message a tick enqueues: the schedule's actor and args, a deterministic id."""
    return Message(
        id=tick_id(schedule.name, tick),
        actor=schedule.actor,
        queue=schedule.queue,
        priority=schedule.priority,
        args=schedule.args,
        unique=True,
        enqueued_at=time.time() if now is None else now,
    )


def plan(schedule: Schedule, last: float, now: float) -> Iterator[tuple[float, bool]]:
    """The (tick, enqueue?) pairs to handle for ``schedule`` at ``now``, oldest first."""
    due = schedule.due(last, now)
    if not due:
        return
    if not schedule.enabled:
        yield due[-1], False
    elif schedule.missed == "all":
        for tick in due:
            yield tick, True
    elif schedule.missed == "once":
        yield due[-1], True
    else:  # skip: only a tick that is (about) on time runs
        yield due[-1], now - due[-1] <= ON_TIME


class Scheduler:
    """Fires the due ticks of ``schedules`` (plus those of ``source``) through ``broker``."""

    def __init__(
        self,
        broker: MessageBroker,
        schedules: Sequence[Schedule] = (),
        source: ScheduleSource | None = None,
        *,
        refresh: float = REFRESH,
        on_fired: Fired | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._broker = broker
        self._fixed = list(schedules)
        self._source = source
        self._refresh = refresh
        self._on_fired = on_fired
        self._clock = clock
        self._current: list[Schedule] = _unique(self._fixed)
        self._read_at = -1.0
        self.fired = 0
        """Jobs this scheduler enqueued (ticks it won)."""

    @property
    def schedules(self) -> list[Schedule]:
        """The schedules as last read."""
        return list(self._current)

    async def refresh(self) -> None:
        """Read the source and the schedules kept in the broker (``Job(cron=...)``) again now;
        of two schedules of one name, the fixed one wins, then the source's."""
        self._read_at = time.monotonic()
        extra = list(await self._source()) if self._source is not None else []
        for name, data in (await self._broker.list_schedules()).items():
            fields = {k: v for k, v in data.items() if k not in ("name", "source")}
            try:
                extra.append(Schedule.from_dict(name, fields, source=data.get("source", "job")))
            except (ScheduleError, TypeError) as exc:
                logger.warning("schedule %r kept in the broker is skipped: %s", name, exc)
        self._current = _unique([*self._fixed, *extra])

    async def run(self) -> None:
        """Fire ticks until cancelled; broker errors are logged and retried, never raised."""
        failing = False
        while True:
            try:
                if time.monotonic() - self._read_at >= self._refresh:
                    await self.refresh()
                wait = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    logger.warning("schedules: %s; trying again every %.0fs", exc, RETRY_DELAY)
                failing, wait = True, RETRY_DELAY
            else:
                if failing:
                    logger.warning("schedules: working again")
                failing = False
            await asyncio.sleep(wait)

    async def step(self, now: float | None = None) -> float:
        """Handle every due tick at ``now``; returns the seconds until the next tick (at most
        the refresh interval)."""
        now = self._clock() if now is None else now
        by_queue: dict[str, list[Schedule]] = {}
        for schedule in self._current:
            by_queue.setdefault(schedule.queue, []).append(schedule)
        broker = self._broker
        for queue, group in by_queue.items():
            marks = await broker.schedule_marks(queue, [s.name for s in group])
            for schedule in group:
                last = marks.get(schedule.name)
                if last is None:  # first seen: it starts now
                    await broker.fire(queue, schedule.name, now, None)
                    continue
                for tick, send in plan(schedule, last, now):
                    message = tick_message(schedule, tick, now) if send else None
                    if await broker.fire(queue, schedule.name, tick, message) and message:
                        await self._fired(schedule, tick, message.id)
        upcoming = [s.next_after(now) for s in self._current]
        wait = min(upcoming, default=now + self._refresh) - self._clock()
        return min(max(wait, 0.005), self._refresh)

    async def _fired(self, schedule: Schedule, tick: float, job_id: str) -> None:
        self.fired += 1
        logger.info("schedule %s: enqueued job %s (%s)", schedule.name, job_id, schedule.actor)
        if self._on_fired is not None:
            try:
                done = self._on_fired(schedule, tick, job_id)
                if done is not None:
                    await done
            except Exception:
                logger.exception("schedule %s: the on_fired callback failed", schedule.name)


def _unique(schedules: Sequence[Schedule]) -> list[Schedule]:
    """The first schedule of each name."""
    seen: dict[str, Schedule] = {}
    for schedule in schedules:
        seen.setdefault(schedule.name, schedule)
    return list(seen.values())
