"""Autodiscovery of tasks.py, both ways of declaring actors, and the typed @actor helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from django.apps import AppConfig, apps

from repid_django import Queue
from repid_django.engine.actor import Actor
from repid_django.worker.discovery import (
    ActorRegistry,
    DuplicateActorWarning,
    TasksImportError,
    import_tasks,
    project_router,
)
from tests.django.testapp import tasks


def test_router_and_shortcut_actors_are_both_found() -> None:
    actors = project_router().actors
    assert actors["record"].fn is tasks.record  # @router.actor on a module-level Router
    assert actors["sync_record"].queue == "other"
    assert actors["add"].fn is tasks.add.fn  # the app-wide @actor shortcut
    assert actors["child_pid"].run_in_process


def test_an_app_without_tasks_module_is_skipped() -> None:
    assert import_tasks(apps.get_app_config("sessions")) is None


def test_an_import_error_inside_tasks_py_names_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "brokenapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text("import module_that_does_not_exist_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "brokenapp.tasks", raising=False)
    config = AppConfig.create("brokenapp")
    with pytest.raises(TasksImportError) as info:
        import_tasks(config)
    assert "brokenapp.tasks of the installed app 'brokenapp'" in str(info.value)
    assert "module_that_does_not_exist_anywhere" in str(info.value)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def _first() -> None: ...


def _second() -> None: ...


def test_two_actors_with_one_name_warn_naming_both() -> None:
    registry = ActorRegistry()
    registry.add(Actor.build(_first, name="notify"), "a.tasks")
    with pytest.warns(DuplicateActorWarning) as record:
        registry.add(Actor.build(_second, name="notify"), "b.tasks")
    text = str(record[0].message)
    assert "test_discovery._first" in text
    assert "test_discovery._second" in text
    assert registry.actors()["notify"].fn is _second  # the later one wins, as documented


def test_the_same_actor_found_twice_is_not_a_duplicate() -> None:
    registry = ActorRegistry()
    actor = Actor.build(_first, name="notify")
    registry.add(actor, "a.tasks")
    registry.add(actor, "b.tasks")  # e.g. a router imported into a second tasks.py
    assert registry.duplicates() == {}


def test_shortcut_actor_is_still_a_plain_function() -> None:
    assert tasks.add(2, 3) == 5
    assert tasks.add.__name__ == "add"
    assert tasks.add.name == "add"


def test_shortcut_enqueue_sends_checked_arguments() -> None:
    first = tasks.add.enqueue(1, 2).value
    second = tasks.add.job(priority=5).enqueue(a=1, b=2).value
    messages = Queue("default").connection.call(
        lambda: Queue("default").connection.message_broker.list_messages("default")
    )
    by_id = {message.id: message for message in messages}
    assert by_id[first].args == [1, 2]
    assert by_id[second].args == {"a": 1, "b": 2}
    assert by_id[second].priority == 5
    assert by_id[first].actor == "add"


def test_shortcut_refuses_arguments_that_do_not_fit_before_sending() -> None:
    with pytest.raises(TypeError, match=r"actor 'add'.*missing a required argument: 'b'"):
        tasks.add.enqueue(1)  # type: ignore[call-arg]  # mypy sees the mistake too
    with pytest.raises(TypeError, match="is not JSON"):
        tasks.sleepy.enqueue(seconds=object())  # type: ignore[arg-type]
    assert Queue("default").stats().value.ready == 0


def test_mixed_positional_and_keyword_arguments_become_keywords() -> None:
    job = tasks.add.job().build(1, b=2)
    assert job.args == {"a": 1, "b": 2}
