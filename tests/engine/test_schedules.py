"""Periodic schedules: tick times (cron with seconds, time zones, DST), the missed-tick
policies, live edits, bad input, and one job per tick however many schedulers race.

The clock is controlled: ``Scheduler.step(now)`` is driven through a day minute by minute, so
the exact run times are asserted, not sampled.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
import redis

from repid_django import (
    Connection,
    InMemoryMessageBroker,
    Job,
    MessageBroker,
    RedisMessageBroker,
    Repid,
    Router,
    Worker,
)
from repid_django.engine.schedules import Schedule, ScheduleError
from repid_django.engine.schedules.scheduler import Scheduler, tick_id

from ._helpers import Running, until

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def at(zone: tzinfo, year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=zone).timestamp()


async def fired_over(
    schedule: Schedule, start: float, end: float, step: float = 60.0
) -> list[datetime]:
    """Drive one scheduler from ``start`` to ``end`` every ``step`` seconds; the local run times
    of the jobs it enqueued."""
    broker = InMemoryMessageBroker()
    await broker.declare_queue(schedule.queue)
    runs: list[datetime] = []
    scheduler = Scheduler(
        broker,
        [schedule],
        on_fired=lambda s, tick, _id: runs.append(datetime.fromtimestamp(tick, schedule.zone)),
    )
    now = start
    while now <= end:
        await scheduler.step(now)
        now += step
    return runs


def local(runs: list[datetime]) -> list[str]:
    return [r.strftime("%m-%d %H:%M %z") for r in runs]


# DST -------------------------------------------------------------------------------------------
async def test_paris_spring_forward_a_daily_0230_runs_once_at_0300() -> None:
    daily = Schedule("d", "report", cron="30 2 * * *", tz="Europe/Paris")
    three = Schedule("t", "report", cron="0 3 * * *", tz="Europe/Paris")
    start, end = at(PARIS, 2026, 3, 28, 0, 0), at(PARIS, 2026, 3, 30, 12, 0)
    assert local(await fired_over(daily, start, end)) == [
        "03-28 02:30 +0100",
        "03-29 03:00 +0200",  # 02:30 does not exist that day: right after the jump
        "03-30 02:30 +0200",
    ]
    assert local(await fired_over(three, start, end)) == [
        "03-28 03:00 +0100",
        "03-29 03:00 +0200",
        "03-30 03:00 +0200",
    ]


async def test_paris_fall_back_a_daily_0230_runs_once_not_twice() -> None:
    daily = Schedule("d", "report", cron="30 2 * * *", tz="Europe/Paris")
    hourly = Schedule("h", "report", cron="30 * * * *", tz="Europe/Paris")
    start, end = at(PARIS, 2026, 10, 24, 12, 0), at(PARIS, 2026, 10, 26, 12, 0)
    assert local(await fired_over(daily, start, end)) == [
        "10-25 02:30 +0200",  # the first 02:30; the second one (+0100) does not run again
        "10-26 02:30 +0100",
    ]
    # A wildcard hour follows the wall clock: 02:30 comes twice that night, and runs twice.
    night = [r for r in local(await fired_over(hourly, start, end)) if r.startswith("10-25 0")]
    assert night[:5] == [
        "10-25 00:30 +0200",
        "10-25 01:30 +0200",
        "10-25 02:30 +0200",
        "10-25 02:30 +0100",
        "10-25 03:30 +0100",
    ]


async def test_new_york_dst_days() -> None:
    daily = Schedule("d", "report", cron="30 2 * * *", tz="America/New_York")
    spring = await fired_over(
        daily, at(NEW_YORK, 2026, 3, 7, 12, 0), at(NEW_YORK, 2026, 3, 9, 12, 0)
    )
    assert local(spring) == ["03-08 03:00 -0400", "03-09 02:30 -0400"]
    fall = await fired_over(
        daily, at(NEW_YORK, 2026, 10, 31, 12, 0), at(NEW_YORK, 2026, 11, 2, 12, 0)
    )
    # New York falls back from 02:00 EDT to 01:00 EST: 02:30 comes once, 01:30 twice.
    assert local(fall) == ["11-01 02:30 -0500", "11-02 02:30 -0500"]
    early = Schedule("e", "report", cron="30 1 * * *", tz="America/New_York")
    fall = await fired_over(
        early, at(NEW_YORK, 2026, 10, 31, 12, 0), at(NEW_YORK, 2026, 11, 2, 12, 0)
    )
    assert local(fall) == ["11-01 01:30 -0400", "11-02 01:30 -0500"]


async def test_a_cron_with_seconds_and_an_every_interval() -> None:
    every_ten = Schedule("s", "ping", cron="*/10 * * * * *")
    start = at(UTC, 2026, 1, 1, 0, 0) - 0.5
    runs = await fired_over(every_ten, start, start + 30.5, step=0.5)
    assert [r.strftime("%H:%M:%S") for r in runs] == [
        "00:00:00",
        "00:00:10",
        "00:00:20",
        "00:00:30",
    ]
    every_two = Schedule("e", "ping", every=timedelta(seconds=2))
    runs = await fired_over(every_two, start, start + 6.5, step=0.25)
    assert [r.strftime("%H:%M:%S") for r in runs] == [
        "00:00:00",
        "00:00:02",
        "00:00:04",
        "00:00:06",
    ]


# missed ticks ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("missed", "expected"),
    [("skip", []), ("once", ["00:05:00"]), ("all", [f"00:0{m}:00" for m in range(1, 6)])],
)
async def test_missed_ticks_after_every_worker_was_down(missed: str, expected: list[str]) -> None:
    schedule = Schedule("m", "report", every=60, missed=missed)  # type: ignore[arg-type]
    broker = InMemoryMessageBroker()
    await broker.declare_queue("default")
    runs: list[str] = []
    scheduler = Scheduler(
        broker,
        [schedule],
        on_fired=lambda s, tick, _: runs.append(
            datetime.fromtimestamp(tick, UTC).strftime("%H:%M:%S")
        ),
    )
    t0 = at(UTC, 2026, 1, 1, 0, 0)
    await scheduler.step(t0)  # first seen: starts now, nothing due
    assert runs == []
    await scheduler.step(t0 + 5 * 60 + 30)  # all workers were down for five ticks
    assert runs == expected
    await scheduler.step(t0 + 6 * 60)  # and then on time again
    assert runs[-1] == "00:06:00"


async def test_a_disabled_schedule_fires_nothing_and_no_backlog_when_enabled_again() -> None:
    broker = InMemoryMessageBroker()
    await broker.declare_queue("default")
    runs: list[float] = []
    on = Schedule("x", "report", every=60)
    off = Schedule("x", "report", every=60, enabled=False)
    current = [on]

    async def source() -> list[Schedule]:
        return current

    scheduler = Scheduler(broker, source=source, on_fired=lambda s, tick, _: runs.append(tick))
    t0 = at(UTC, 2026, 1, 1, 0, 0)
    await scheduler.refresh()
    await scheduler.step(t0)
    await scheduler.step(t0 + 60)
    assert runs == [t0 + 60]
    current[:] = [off]
    await scheduler.refresh()
    for minute in range(2, 10):
        await scheduler.step(t0 + minute * 60)
    assert runs == [t0 + 60]
    current[:] = [on]
    await scheduler.refresh()
    await scheduler.step(t0 + 10 * 60 + 1)
    assert runs == [t0 + 60, t0 + 600]  # the tick that is due now, not the eight before


async def test_an_edit_takes_the_next_tick_from_the_last_one_handled() -> None:
    broker = InMemoryMessageBroker()
    await broker.declare_queue("default")
    runs: list[float] = []
    current = [Schedule("x", "report", every=60)]

    async def source() -> list[Schedule]:
        return current

    scheduler = Scheduler(broker, source=source, on_fired=lambda s, tick, _: runs.append(tick))
    t0 = at(UTC, 2026, 1, 1, 0, 0)
    await scheduler.refresh()
    await scheduler.step(t0)
    await scheduler.step(t0 + 60)
    current[:] = [Schedule("x", "report", every=20)]  # edited between two ticks
    await scheduler.refresh()
    await scheduler.step(t0 + 60)  # the same instant again: nothing twice
    await scheduler.step(t0 + 80)
    await scheduler.step(t0 + 100)
    assert runs == [t0 + 60, t0 + 80, t0 + 100]


# one job per tick ------------------------------------------------------------------------------
async def test_racing_schedulers_enqueue_one_job_per_tick_on_redis(
    redis_url: str, key_prefix: str
) -> None:
    brokers = [RedisMessageBroker(redis_url, prefix=key_prefix) for _ in range(3)]
    schedule = Schedule("race", "ping", every=1)
    schedulers = [Scheduler(b, [schedule]) for b in brokers]
    await brokers[0].declare_queue("default")
    t0 = at(UTC, 2026, 1, 1, 0, 0)
    try:
        for second in range(0, 21):
            now = t0 + second + 0.1
            await asyncio.gather(*(s.step(now) for s in schedulers))
        assert sum(s.fired for s in schedulers) == 20
        queued = await brokers[0].list_messages("default", limit=100)
        assert sorted(m.id for m in queued) == sorted(tick_id("race", t0 + n) for n in range(1, 21))
    finally:
        for b in brokers:
            await b.disconnect()


async def test_an_actor_schedule_runs_on_a_worker(
    broker: InMemoryMessageBroker, app: object
) -> None:
    router = Router()
    ran: list[str] = []

    @router.actor(name="beat", schedule=timedelta(seconds=1))
    async def beat() -> None:
        ran.append("beat")

    assert [s.name for s in router.schedules] == ["beat"]
    worker = Worker(routers=[router], handle_signals=[])
    running = Running(worker)
    await until(lambda: len(ran) >= 2, what="the schedule ran twice")
    runner = await running.stop()
    assert runner.scheduler is not None
    assert runner.scheduler.fired >= 2


# bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron '61 \\* \\* \\* \\*': Bad minute"),
        ({"cron": "* * *"}, "expected 5 fields"),
        ({"cron": "61 * * * * *"}, "seconds must be within 0-59"),
        ({"every": 0.5}, "every must be at least 1 second"),
        ({}, "exactly one of cron"),
        ({"cron": "* * * * *", "every": 5}, "exactly one of cron"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"cron": "* * * * *", "args": {"when": datetime.now()}}, "not JSON-encodable"),
        ({"cron": "* * * * *", "missed": "never"}, "missed must be one of skip, once, all"),
        ({"cron": "* * * * *", "queue": "bad queue"}, "invalid queue name"),
    ],
)
def test_bad_schedules_are_refused_with_a_clear_message(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ScheduleError, match=message):
        Schedule("nightly", "report", **fields)  # type: ignore[arg-type]


def test_settings_style_schedules_name_unknown_keys() -> None:
    with pytest.raises(ScheduleError, match="unknown key\\(s\\) crontab"):
        Schedule.from_dict("n", {"actor": "a", "crontab": "* * * * *"}, source="settings")
    s = Schedule.from_dict(
        "n", {"actor": "a", "cron": "0 3 * * *", "tz": "Europe/Paris"}, source="settings"
    )
    assert s.source == "settings"
    assert s.next_runs(1, datetime(2026, 3, 29, tzinfo=PARIS))[0].hour == 3


# Job(cron=...) ---------------------------------------------------------------------------------
async def test_a_job_with_cron_is_kept_in_redis_and_fired_by_the_workers(
    redis_url: str, key_prefix: str
) -> None:
    broker = RedisMessageBroker(redis_url, prefix=key_prefix)
    connection = Connection(broker)
    router = Router()
    ran: list[str] = []

    @router.actor(name="tick")
    async def tick(word: str) -> None:
        ran.append(word)

    try:
        job = Job("tick", args={"word": "hi"}, cron="* * * * * *", connection=connection)
        assert await job.enqueue() == "tick"
        kept = await broker.list_schedules()
        assert kept["tick"]["cron"] == "* * * * * *"
        async with Repid(connection).magic():
            worker = Worker(routers=[router], handle_signals=[])
            running = Running(worker)
            await until(lambda: len(ran) >= 2, within=6.0, what="the kept schedule fired twice")
            assert await broker.remove_schedule("tick")
            await running.stop()
        assert set(ran) == {"hi"}
    finally:
        await connection.disconnect()


def test_a_job_with_cron_from_sync_code_and_its_bad_input(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    connection = Connection(RedisMessageBroker(redis_url, prefix=key_prefix))
    try:
        name = (
            Job("report", id_="nightly", cron="0 3 * * *", tz="Europe/Paris", connection=connection)
            .enqueue()
            .value
        )
        assert name == "nightly"
        assert redis_client.hexists(f"{key_prefix}:{{~}}:schedules", "nightly")
    finally:
        connection.close()
    with pytest.raises(ScheduleError, match="invalid cron"):
        Job("report", cron="every day")
    with pytest.raises(ValueError, match="cron= repeats the job"):
        Job("report", cron="0 3 * * *", deferred_by=60)


async def test_runs_count_only_ticks_that_made_a_job_and_forget_starts_afresh(
    contract_broker: MessageBroker,
) -> None:
    broker = contract_broker
    await broker.declare_queue("default")
    schedule = Schedule("f", "report", every=60)
    off = Schedule("f", "report", every=60, enabled=False)
    t0 = at(UTC, 2026, 1, 1, 0, 0)
    scheduler = Scheduler(broker, [schedule])
    await scheduler.step(t0)  # first seen: marked, no job
    assert await broker.schedule_runs("default", ["f"]) == {}
    await scheduler.step(t0 + 60)
    assert await broker.schedule_runs("default", ["f"]) == {"f": t0 + 60}
    await Scheduler(broker, [off]).step(t0 + 120)  # disabled: marked, no job
    assert await broker.schedule_marks("default", ["f"]) == {"f": t0 + 120}
    assert await broker.schedule_runs("default", ["f"]) == {"f": t0 + 60}
    await broker.forget_schedule("default", "f")  # deleted, then made again much later
    again = Scheduler(broker, [Schedule("f", "report", every=60, missed="all")])
    await again.step(t0 + 3600)
    assert again.fired == 0  # no catch-up of the hour it did not exist
    await again.step(t0 + 3660)
    assert again.fired == 1
