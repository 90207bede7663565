"""Periodic schedules, Django side: ``REPID["SCHEDULES"]`` and its checks, the default zone
(``TIME_ZONE``, also with ``USE_TZ = False``), the model's validation field by field, and the
sync of code and settings schedules into the table."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from repid_django import conf
from repid_django.engine.actor import Actor
from repid_django.engine.schedules.spec import Schedule as EngineSchedule
from repid_django.engine.schedules.spec import ScheduleError, default_tz
from repid_django.models import Schedule
from repid_django.worker import discovery
from repid_django.worker.discovery import ActorRegistry
from repid_django.worker.schedules import (
    database_source,
    declared_schedules,
    settings_schedules,
    sync_schedules,
)

pytestmark = pytest.mark.django_db

NIGHTLY = {"actor": "record", "cron": "0 3 * * *", "tz": "Europe/Paris", "args": {"tag": "n"}}


def schedules_setting(settings: Any, value: Any) -> None:
    settings.REPID = {**settings.REPID, "SCHEDULES": value}


def messages(prefix: str = "repid_django.") -> list[Any]:
    return [m for m in run_checks(databases=["default"]) if (m.id or "").startswith(prefix)]


def by_id(wanted: str) -> list[str]:
    return [m.msg for m in messages() if m.id == wanted]


async def _heartbeat() -> None:
    return None


@pytest.fixture
def code_schedule(monkeypatch: pytest.MonkeyPatch) -> ActorRegistry:
    """The project's actors plus ``heartbeat``, declared with ``schedule=timedelta(seconds=30)``."""
    registry = ActorRegistry()
    for actor in discovery.project_router().actors.values():
        registry.add(actor, "tests.django.testapp.tasks")
    registry.add(
        Actor.build(_heartbeat, name="heartbeat", schedule=timedelta(seconds=30)), "app.tasks"
    )
    registry.discovered = True
    monkeypatch.setattr(discovery, "registry", registry)
    return registry


# ------------------------------------------------------------------------------- settings


def test_settings_schedules_are_parsed_with_their_source(settings: Any) -> None:
    schedules_setting(
        settings,
        {"nightly-report": NIGHTLY, "pulse": {"actor": "noop", "every": timedelta(minutes=5)}},
    )
    found, problems = settings_schedules()
    assert problems == []
    nightly, pulse = found
    assert (nightly.name, nightly.source, nightly.cron, nightly.tz) == (
        "nightly-report",
        "settings",
        "0 3 * * *",
        "Europe/Paris",
    )
    assert nightly.next_runs(1, datetime(2026, 7, 1, tzinfo=UTC))[0].isoformat() == (
        "2026-07-01T03:00:00+02:00"
    )
    assert pulse.interval == 300.0
    assert by_id("repid_django.E010") == []
    assert by_id("repid_django.E011") == []


def test_settings_schedules_come_from_the_environment_as_json(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPID_SCHEDULES", json.dumps({"pulse": {"actor": "noop", "every": 2}}))
    conf.reset()
    (pulse,), _ = settings_schedules()
    assert (pulse.name, pulse.interval) == ("pulse", 2.0)
    monkeypatch.setenv("REPID_SCHEDULES", "{not json")
    conf.reset()
    (found,) = by_id("repid_django.E002")
    assert "REPID_SCHEDULES" in found
    assert "not JSON" in found


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"actor": "record", "cron": "0 25 * * *"}, "invalid cron '0 25 * * *'"),
        ({"actor": "record", "cron": "0 3 * *"}, "expected 5 fields"),
        (
            {"actor": "record", "every": 60, "tz": "Mars/Olympus"},
            "unknown time zone 'Mars/Olympus'",
        ),
        ({"actor": "record", "every": 60, "args": {"when": datetime.now()}}, "not JSON-encodable"),
        ({"actor": "record", "every": 60, "args": "tag"}, "args must be a dict"),
        ({"actor": "record", "every": 60, "cron_expr": "x"}, "unknown key(s) cron_expr"),
        ({"actor": "record", "every": 0.5}, "every must be at least 1 second"),
        ({"actor": "record"}, "give exactly one of cron"),
        ({"cron": "0 3 * * *"}, "'actor' is required"),
        ({"actor": "record", "every": 60, "missed": "never"}, "missed must be one of"),
        ("0 3 * * *", "expected a dict"),
    ],
)
def test_a_bad_settings_schedule_is_a_check_error_naming_it(
    settings: Any, entry: Any, expected: str
) -> None:
    schedules_setting(settings, {"nightly-report": entry, "fine": {"actor": "noop", "every": 9}})
    (message,) = [m for m in messages() if m.id == "repid_django.E010"]
    assert "REPID['SCHEDULES']" in message.msg
    assert "'nightly-report'" in message.msg
    assert expected in message.msg
    assert message.hint
    with pytest.raises(ScheduleError, match="nightly-report"):
        declared_schedules()  # and runworker refuses to start with the same message


def test_an_unknown_actor_is_a_check_error_listing_the_known_ones(settings: Any) -> None:
    schedules_setting(settings, {"nightly-report": {"actor": "reprot", "cron": "0 3 * * *"}})
    (message,) = [m for m in messages() if m.id == "repid_django.E011"]
    assert "'nightly-report'" in message.msg
    assert "'reprot'" in message.msg
    assert "record" in message.hint


def test_schedules_that_is_not_a_dict_is_a_settings_error(settings: Any) -> None:
    schedules_setting(settings, [NIGHTLY])
    (message,) = by_id("repid_django.E002")
    assert "REPID['SCHEDULES']" in message
    assert "is not a dict" in message


def test_a_settings_schedule_named_like_a_code_one_is_a_warning(
    settings: Any, code_schedule: ActorRegistry
) -> None:
    schedules_setting(settings, {"heartbeat": {"actor": "noop", "every": 10}})
    (message,) = by_id("repid_django.W011")
    assert "'heartbeat'" in message
    (chosen,) = [s for s in declared_schedules() if s.name == "heartbeat"]
    assert (chosen.source, chosen.actor) == ("settings", "noop")


# -------------------------------------------------------------------------- time zones


def test_schedules_without_tz_use_the_project_time_zone() -> None:
    assert default_tz() == "UTC"
    with override_settings(TIME_ZONE="Asia/Tokyo"):
        assert default_tz() == "Asia/Tokyo"
        nightly = EngineSchedule("n", "record", cron="0 3 * * *")
        first = nightly.next_runs(1, datetime(2026, 1, 1, tzinfo=UTC))[0]
        assert first.isoformat() == "2026-01-02T03:00:00+09:00"  # 00:00 UTC is 09:00 there
    assert default_tz() == "UTC"


def test_a_project_without_use_tz_still_gets_its_time_zone(settings: Any) -> None:
    schedules_setting(settings, {"nightly-report": {"actor": "record", "cron": "30 2 * * *"}})
    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        assert default_tz() == "America/New_York"
        assert sync_schedules().created == ["nightly-report"]
        row = Schedule.objects.get(name="nightly-report")
        assert row.created.tzinfo is None  # naive, as USE_TZ = False stores them
        runs = row.to_schedule().next_runs(2, datetime(2026, 3, 7, 12, tzinfo=UTC))
        # New York's spring forward: 02:30 does not exist on 03-08, it runs at 03:00 EDT.
        assert [r.isoformat() for r in runs] == [
            "2026-03-08T03:00:00-04:00",
            "2026-03-09T02:30:00-04:00",
        ]


# ------------------------------------------------------------------------------ the model


def row(**values: Any) -> Schedule:
    base: dict[str, Any] = {"name": "pulse", "actor": "record", "every": 60.0}
    return Schedule(**{**base, **values})


@pytest.mark.parametrize(
    ("values", "field", "expected"),
    [
        ({"every": None, "cron": "61 * * * *"}, "cron", "invalid cron"),
        ({"every": 0.2}, "every", "at least 1 second"),
        ({"tz": "Europe/Pariss"}, "tz", "unknown time zone 'Europe/Pariss'"),
        ({"args": 5}, "args", "args must be a dict"),
        ({"queue": "no spaces"}, "queue", "queue"),
        ({"priority": 1000}, "priority", "priority"),
        ({"missed": "later"}, "missed", "missed must be one of"),
        ({"name": "two words"}, "name", "invalid schedule name"),
        ({"cron": "0 3 * * *"}, "cron", "not both"),
        ({"every": None}, "cron", "give a cron expression or an interval"),
    ],
)
def test_field_errors_name_the_field(values: dict[str, Any], field: str, expected: str) -> None:
    errors = row(**values).field_errors()
    assert list(errors) == [field]
    assert expected in errors[field]


def test_a_valid_row_is_the_engine_schedule() -> None:
    valid = row(cron="0 3 * * 1-5", every=None, tz="Europe/Paris", args=[1, 2], priority=50)
    assert valid.field_errors() == {}
    engine = valid.to_schedule()
    assert (engine.cron, engine.tz, engine.args, engine.priority, engine.source) == (
        "0 3 * * 1-5",
        "Europe/Paris",
        [1, 2],
        50,
        "admin",
    )


# ------------------------------------------------------------------------------- the sync


def test_sync_writes_code_and_settings_schedules_and_keeps_enabled(
    settings: Any, code_schedule: ActorRegistry
) -> None:
    Schedule.objects.create(name="by-hand", actor="noop", every=10)
    schedules_setting(settings, {"nightly-report": NIGHTLY})
    done = sync_schedules()
    assert sorted(done.created) == ["heartbeat", "nightly-report"]
    rows = {r.name: r for r in Schedule.objects.all()}
    assert {n: r.source for n, r in rows.items()} == {
        "by-hand": "admin",
        "heartbeat": "code",
        "nightly-report": "settings",
    }
    assert (rows["heartbeat"].every, rows["heartbeat"].cron) == (30.0, "")
    assert rows["nightly-report"].args == {"tag": "n"}

    Schedule.objects.filter(name="nightly-report").update(enabled=False)  # the admin's edit
    assert not sync_schedules().changed  # nothing to write: no query but the read
    schedules_setting(settings, {"nightly-report": {**NIGHTLY, "cron": "0 4 * * *"}})
    assert sync_schedules().updated == ["nightly-report"]
    nightly = Schedule.objects.get(name="nightly-report")
    assert (nightly.cron, nightly.enabled) == ("0 4 * * *", False)  # enabled kept

    schedules_setting(settings, {})
    assert sync_schedules().removed == ["nightly-report"]
    assert sorted(Schedule.objects.values_list("name", flat=True)) == ["by-hand", "heartbeat"]


def test_a_declared_schedule_takes_over_an_admin_row_of_its_name(settings: Any) -> None:
    Schedule.objects.create(name="nightly-report", actor="noop", every=10, enabled=False)
    schedules_setting(settings, {"nightly-report": NIGHTLY})
    assert sync_schedules().replaced == ["nightly-report"]
    taken = Schedule.objects.get(name="nightly-report")
    assert (taken.source, taken.actor, taken.every, taken.enabled) == (
        "settings",
        "record",
        None,
        False,
    )


@pytest.mark.django_db(transaction=True)
async def test_the_database_source_reads_every_row_in_one_query(settings: Any) -> None:
    from asgiref.sync import sync_to_async

    schedules_setting(settings, {"nightly-report": NIGHTLY})
    await sync_to_async(sync_schedules)()
    await Schedule.objects.acreate(name="admin-one", actor="noop", every=5, enabled=False)
    await Schedule.objects.acreate(name="broken", actor="noop", every=5, tz="Nowhere/Land")
    source = database_source()
    found = await source()
    assert [(s.name, s.source, s.enabled) for s in found] == [
        ("nightly-report", "settings", True),
        ("admin-one", "admin", False),  # "broken" cannot run: logged and skipped
    ]
    await Schedule.objects.filter(name="admin-one").aupdate(every=7, enabled=True)
    assert [(s.name, s.interval, s.enabled) for s in await source()][1] == ("admin-one", 7.0, True)


@pytest.mark.django_db(transaction=True)
def test_runworker_refuses_to_start_with_a_bad_schedule(redis_url: str, key_prefix: str) -> None:
    from tests.django.test_runworker import runworker, worker_env

    bad = json.dumps({"nightly-report": {"actor": "record", "cron": "0 3 * *"}})
    process = runworker(worker_env(redis_url, key_prefix, REPID_SCHEDULES=bad), "--burst")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "repid_django.E010" in err
    assert "schedule 'nightly-report': invalid cron '0 3 * *'" in err


def test_the_actor_shortcut_takes_a_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    from repid_django import shortcuts

    fresh = ActorRegistry()
    monkeypatch.setattr(shortcuts, "registry", fresh)

    @shortcuts.actor(schedule="0 3 * * *")
    def nightly_cleanup() -> None:
        return None

    schedule = nightly_cleanup.actor.schedule
    assert schedule is not None
    assert (schedule.name, schedule.actor, schedule.cron) == (
        "nightly_cleanup",
        "nightly_cleanup",
        "0 3 * * *",
    )
    assert [s.name for s in fresh.shortcut_router.schedules] == ["nightly_cleanup"]
