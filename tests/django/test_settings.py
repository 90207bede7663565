"""The REPID settings dict: defaults, environment overrides, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from repid_django import conf
from repid_django import connection as client


def test_defaults_apply_to_keys_not_set(settings: Any, redis_url: str) -> None:
    settings.REPID = {"BROKER_URL": redis_url}
    resolved = conf.get_settings()
    assert resolved.prefix == conf.DEFAULTS["PREFIX"]
    assert resolved.concurrency == conf.DEFAULTS["CONCURRENCY"]
    assert resolved.lease_ttl == conf.DEFAULTS["LEASE_TTL"]
    assert resolved.mirror is True
    assert resolved.queues is None
    assert resolved.embedded_dir == Path(settings.BASE_DIR)


def test_settings_dict_values_are_used(settings: Any) -> None:
    settings.REPID = {**settings.REPID, "CONCURRENCY": 7, "QUEUES": ["a", "b"], "MIRROR": False}
    resolved = conf.get_settings()
    assert (resolved.concurrency, resolved.queues, resolved.mirror) == (7, ("a", "b"), False)


def test_environment_overrides_the_settings_dict(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.REPID = {**settings.REPID, "CONCURRENCY": 7, "MIRROR": True}
    monkeypatch.setenv("REPID_CONCURRENCY", "3")
    monkeypatch.setenv("REPID_MIRROR", "off")
    monkeypatch.setenv("REPID_QUEUES", "emails,reports")
    monkeypatch.setenv("REPID_BROKER_URL", "redis://:pw@cache.internal:6380/2")
    conf.reset()
    resolved = conf.get_settings()
    assert resolved.concurrency == 3
    assert resolved.mirror is False
    assert resolved.queues == ("emails", "reports")
    assert resolved.broker_url == "redis://:pw@cache.internal:6380/2"


def test_environment_reaches_the_default_connection(
    settings: Any, monkeypatch: pytest.MonkeyPatch, key_prefix: str
) -> None:
    monkeypatch.setenv("REPID_PREFIX", f"{key_prefix}-env")
    conf.reset()
    broker = client.get_default_connection().message_broker
    assert getattr(broker, "prefix", None) == f"{key_prefix}-env"


def test_changing_repid_rebuilds_the_default_connection(settings: Any, key_prefix: str) -> None:
    before = client.get_default_connection()
    settings.REPID = {**settings.REPID, "PREFIX": f"{key_prefix}-2"}
    after = client.get_default_connection()
    assert after is not before
    assert getattr(after.message_broker, "prefix", None) == f"{key_prefix}-2"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("CONCURRENCY", 0, "REPID['CONCURRENCY']: 0 is out of range"),
        ("CONCURRENCY", "many", "REPID['CONCURRENCY']: 'many' is not a whole number"),
        ("LEASE_TTL", -1, "REPID['LEASE_TTL']: -1 is out of range"),
        ("MIRROR", "yes", "REPID['MIRROR']: 'yes' is not a bool"),
        ("QUEUES", "default", "REPID['QUEUES']: 'default' is not a list of queue names"),
        ("QUEUES", ["bad name"], "invalid queue name 'bad name'"),
        ("BROKER_URL", "http://redis:6379", "the scheme 'http' is not supported"),
        ("BROKER_URL", "localhost:6379", "a URL without a scheme is not a Redis URL"),
        ("PREFIX", "a b", "REPID['PREFIX']: 'a b' is not a valid key prefix"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(
    settings: Any, key: str, value: object, expected: str
) -> None:
    settings.REPID = {**settings.REPID, key: value}
    with pytest.raises(ImproperlyConfigured) as info:
        conf.get_settings()
    assert expected in str(info.value)
    assert isinstance(info.value, conf.SettingError)
    assert info.value.fix  # every error says what to do


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPID_LEASE_TTL", "soon")
    conf.reset()
    with pytest.raises(ImproperlyConfigured, match="environment variable REPID_LEASE_TTL"):
        conf.get_settings()


def test_unknown_key_suggests_the_right_one(settings: Any) -> None:
    settings.REPID = {**settings.REPID, "CONCURENCY": 4}
    with pytest.raises(ImproperlyConfigured, match="Did you mean 'CONCURRENCY'"):
        conf.get_settings()


def test_reaper_must_scan_more_often_than_leases_expire(settings: Any) -> None:
    settings.REPID = {**settings.REPID, "LEASE_TTL": 5, "REAPER_INTERVAL": 10}
    with pytest.raises(ImproperlyConfigured, match="longer than LEASE_TTL"):
        conf.get_settings()


def test_repid_must_be_a_dict(settings: Any) -> None:
    settings.REPID = [("CONCURRENCY", 1)]
    with pytest.raises(ImproperlyConfigured, match="Make it a dict"):
        conf.get_settings()


def test_enqueue_timeout_reaches_the_broker(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.REPID = {**settings.REPID, "ENQUEUE_TIMEOUT": 0.75}
    broker = client.get_default_connection().message_broker
    assert getattr(broker, "enqueue_timeout", None) == 0.75
    monkeypatch.setenv("REPID_ENQUEUE_TIMEOUT", "abc")
    conf.reset()
    with pytest.raises(ImproperlyConfigured, match="REPID_ENQUEUE_TIMEOUT: 'abc' is not a number"):
        conf.get_settings()


def test_queue_limits_setting_is_parsed_and_refused_with_a_clear_message(settings: Any) -> None:
    from repid_django.engine.limits import Limits

    settings.REPID = {"QUEUE_LIMITS": {"emails": {"concurrency": 5, "rate": "100/m"}}}
    assert conf.load().queue_limits == {"emails": Limits(5, "100/m")}
    for bad, says in [
        ({"emails": {"rate": "lots"}}, "invalid rate limit 'lots'"),
        ({"emails": {"concurrency": 0}}, "concurrency limit must be an int >= 1"),
        ({"emails": {"burst": 3}}, "is not a limits dict"),
        ({"bad queue": {"concurrency": 1}}, "invalid queue name"),
        (["emails"], "is not a dict"),
    ]:
        settings.REPID = {"QUEUE_LIMITS": bad}
        with pytest.raises(conf.SettingError, match=says):
            conf.load()
