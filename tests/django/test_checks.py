"""System checks: each id fires on its problem and stays quiet otherwise."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.core import checks
from django.core.checks import run_checks

from repid_django.engine.actor import Actor
from repid_django.worker import discovery
from repid_django.worker.discovery import ActorRegistry, DuplicateActorWarning
from tests.redis_server import free_port

pytestmark = pytest.mark.django_db


def ids(include_deployment_checks: bool = False) -> dict[str, checks.CheckMessage]:
    return {
        message.id: message
        for message in run_checks(
            include_deployment_checks=include_deployment_checks, databases=["default"]
        )
        if message.id and message.id.startswith("repid_django.")
    }


def test_a_correct_configuration_has_no_messages() -> None:
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
