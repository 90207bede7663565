"""Redis URLs: accepted forms, redaction everywhere, clear errors."""

from __future__ import annotations

import logging

import pytest

from repid_django.engine.brokers.redis.broker import RedisMessageBroker, redact_url
from repid_django.engine.brokers.redis.url import RedisOptions

from ..redis_server import RedisServer

pytestmark = pytest.mark.redis
SECRET = "s3cr3t-pa55"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"redis://user:{SECRET}@host:6379/0", "redis://user:***@host:6379/0"),
        (f"redis://:{SECRET}@host/1", "redis://:***@host/1"),
        (f"rediss://default:{SECRET}@h.example:6380/0", "rediss://default:***@h.example:6380/0"),
        (f"unix://:{SECRET}@/run/redis.sock?db=2", "unix://:***@/run/redis.sock?db=2"),
        (f"redis://host/0?password={SECRET}", "redis://host/0?password=%2A%2A%2A"),
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert SECRET not in redact_url(url)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("http://host:6379", "unsupported Redis URL"),
        ("host:6379", "unsupported Redis URL"),
        (f"redis://:{SECRET}@/0", "has no host"),
        (f"redis://:{SECRET}@host/zero", "database number"),
    ],
)
def test_bad_urls_are_refused_without_the_password(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        RedisMessageBroker(url)
    assert SECRET not in str(info.value)


def test_tls_verifies_certificates_and_host_names_by_default() -> None:
    kwargs = RedisOptions("rediss://h.example:6380/0", ssl_ca_certs="/etc/ca.pem").client_kwargs()
    assert kwargs["ssl_cert_reqs"] == "required"
    assert kwargs["ssl_check_hostname"] is True
    assert kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    assert "ssl_cert_reqs" not in RedisOptions("redis://h/0").client_kwargs()


def test_repr_hides_the_password() -> None:
    broker = RedisMessageBroker(f"redis://app:{SECRET}@localhost:6379/0")
    assert SECRET not in repr(broker)
    assert "app:***@localhost" in repr(broker)


async def test_unreachable_redis_names_the_redacted_url(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = RedisServer()  # a free port with nothing listening
    broker = RedisMessageBroker(f"redis://app:{SECRET}@127.0.0.1:{server.port}/0")
    with pytest.raises(ConnectionError) as info:
        await broker.connect()
    text = str(info.value)
    assert f"redis://app:***@127.0.0.1:{server.port}/0" in text
    assert "Check that Redis is running" in text
    assert SECRET not in text
    assert SECRET not in caplog.text


async def test_wrong_password_is_a_clear_error(key_prefix: str) -> None:
    server = RedisServer(password="right-one").start()
    try:
        bad = RedisMessageBroker(f"redis://:{SECRET}@127.0.0.1:{server.port}/0")
        with pytest.raises(ConnectionError) as info:
            await bad.connect()
        assert SECRET not in str(info.value)
        url = f"redis://:right-one@127.0.0.1:{server.port}/3"
        good = RedisMessageBroker(url, prefix=key_prefix)
        await good.connect()
        await good.declare_queue("default")
        assert await good.list_queues() == ["default"]
        await good.disconnect()
    finally:
        server.cleanup()
