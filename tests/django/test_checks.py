"""System checks: each id fires on its problem and stays quiet otherwise."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.core import checks
from django.core.checks import run_checks

from repid_django.checks import probe_redis
from repid_django.engine.actor import Actor
from repid_django.worker import discovery
from repid_django.worker.discovery import ActorRegistry, DuplicateActorWarning
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.django_db


def server(**options: Any) -> Iterator[RedisServer]:
    started = RedisServer(**options).start()
    try:
        yield started
    finally:
        started.cleanup()


@pytest.fixture(scope="module")
def persistent() -> Iterator[RedisServer]:
    """A redis-server with the append-only file on (``appendonly yes``)."""
    yield from server(appendonly=True)


@pytest.fixture(scope="module")
def volatile() -> Iterator[RedisServer]:
    """A redis-server that keeps nothing on disk (``appendonly no``, ``save ""``)."""
    yield from server()


@pytest.fixture(scope="module")
def no_config() -> Iterator[RedisServer]:
    """A redis-server whose CONFIG command is disabled, as on managed services."""
    yield from server(extra=["--rename-command", "CONFIG", ""])


def broker_at(settings: Any, found: RedisServer) -> None:
    settings.REPID = {**settings.REPID, "BROKER_URL": found.url}


def ids(include_deployment_checks: bool = False) -> dict[str, checks.CheckMessage]:
    return {
        message.id: message
        for message in run_checks(
            include_deployment_checks=include_deployment_checks, databases=["default"]
        )
        if message.id and message.id.startswith("repid_django.")
    }


def test_a_correct_configuration_has_no_messages(settings: Any, persistent: RedisServer) -> None:
    broker_at(settings, persistent)
    assert ids(include_deployment_checks=True) == {}


def test_e001_unknown_key(settings: Any) -> None:
    settings.REPID = {**settings.REPID, "BROKER": "redis://x"}
    found = ids()
    assert "repid_django.E001" in found
    assert "BROKER_URL" in (found["repid_django.E001"].hint or "")


def test_e002_bad_value(settings: Any) -> None:
    settings.REPID = {**settings.REPID, "CONCURRENCY": -2}
    found = ids()
    assert "CONCURRENCY" in found["repid_django.E002"].msg


def test_e003_channels_or_daphne_before_repid_django(settings: Any) -> None:
    settings.INSTALLED_APPS = ["daphne", *settings.INSTALLED_APPS]
    found = ids()
    assert "'daphne' is listed before 'repid_django'" in found["repid_django.E003"].msg


def test_e003_not_raised_when_repid_django_comes_first(settings: Any) -> None:
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "daphne"]
    assert "repid_django.E003" not in ids()


def test_w001_unreachable_broker_at_deploy_with_password_redacted(settings: Any) -> None:
    settings.REPID = {**settings.REPID, "BROKER_URL": f"redis://:s3cret@127.0.0.1:{free_port()}/0"}
    assert "repid_django.W001" not in ids()  # only with --deploy: no network on every start
    message = ids(include_deployment_checks=True)["repid_django.W001"]
    assert "cannot reach the broker at redis://:***@127.0.0.1" in message.msg
    assert "s3cret" not in message.msg + (message.hint or "")
    found = ids(include_deployment_checks=True)
    assert "repid_django.W004" not in found  # nothing is known about persistence: no guess
    assert "repid_django.I001" not in found


def test_w001_a_silent_broker_costs_the_check_its_timeout_not_a_hang() -> None:
    # A listening socket nobody accepts on: connecting works (the backlog), no answer comes.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        started = time.monotonic()
        found = probe_redis(url, timeout=0.5)
        elapsed = time.monotonic() - started
    assert [message.id for message in found] == ["repid_django.W001"]
    assert "TimeoutError" in found[0].msg
    assert elapsed < 2.0  # one timeout (no retries, no second round trip), never a hang


def test_w002_eviction_policy(redis_client: redis.Redis) -> None:
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        message = ids(include_deployment_checks=True)["repid_django.W002"]
        assert "allkeys-lru" in message.msg
        assert "noeviction" in (message.hint or "")
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")
    assert "repid_django.W002" not in ids(include_deployment_checks=True)


def test_w003_embedded_redis_at_deploy(settings: Any) -> None:
    settings.REPID = {**settings.REPID, "BROKER_URL": None}
    assert "repid_django.W003" in ids(include_deployment_checks=True)
    assert "repid_django.W003" not in ids()


def test_w004_redis_without_persistence_at_deploy(
    settings: Any, volatile: RedisServer, persistent: RedisServer
) -> None:
    broker_at(settings, volatile)
    assert "repid_django.W004" not in ids()  # only with --deploy: no network on every start
    message = ids(include_deployment_checks=True)["repid_django.W004"]
    assert message.level == checks.WARNING
    assert f"Redis at {volatile.url} keeps nothing on disk" in message.msg
    assert "every queued job" in message.msg
    assert "appendonly yes" in (message.hint or "")
    broker_at(settings, persistent)
    assert "repid_django.W004" not in ids(include_deployment_checks=True)


def test_w004_goes_away_with_the_fix_it_names(settings: Any, volatile: RedisServer) -> None:
    broker_at(settings, volatile)
    with volatile.client() as client:
        try:
            client.config_set("save", "3600 1")  # RDB snapshots are persistence too
            assert "repid_django.W004" not in ids(include_deployment_checks=True)
            client.config_set("save", "")
            client.config_set("appendonly", "yes")  # the hint's fix, on a running server
            assert "repid_django.W004" not in ids(include_deployment_checks=True)
        finally:
            client.config_set("appendonly", "no")
            client.config_set("save", "")
    assert "repid_django.W004" in ids(include_deployment_checks=True)


def test_i001_config_disabled_is_a_note_not_a_warning(
    settings: Any, no_config: RedisServer
) -> None:
    broker_at(settings, no_config)
    found = ids(include_deployment_checks=True)
    assert set(found) == {"repid_django.I001"}  # reached; W002 and W004 unknown, not guessed
    assert found["repid_django.I001"].level == checks.INFO
    assert "refused CONFIG GET" in found["repid_django.I001"].msg
    assert "repid_django.I001" not in ids()


def _one() -> None: ...


def _two() -> None: ...


def test_w010_duplicate_actor_names(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ActorRegistry()
    registry.add(Actor.build(_one, name="send"), "app_a.tasks")
    with pytest.warns(DuplicateActorWarning):
        registry.add(Actor.build(_two, name="send"), "app_b.tasks")
    monkeypatch.setattr(discovery, "registry", registry)
    message = ids()["repid_django.W010"]
    assert "test_checks._one" in message.msg
    assert "test_checks._two" in message.msg
