"""Cluster and Sentinel broker URLs: what they name, how they are redacted, clear refusals.

The servers themselves are tested in ``test_redis_cluster.py`` and ``test_redis_sentinel.py``.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from repid_django.conf_parse import broker_url
from repid_django.engine.brokers.redis.broker import RedisMessageBroker, redact_url
from repid_django.engine.brokers.redis.endpoint import Endpoint
from repid_django.engine.brokers.redis.topology import Kind, parse_topology
from repid_django.engine.brokers.redis.url import RedisOptions

SECRET = "s3cr3t-pa55"


def test_cluster_url_names_its_seed_nodes_and_credentials() -> None:
    url = f"redis+cluster://app:{SECRET}@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002"
    topology = RedisOptions(url).topology
    assert topology.kind is Kind.CLUSTER
    assert topology.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    assert (topology.username, topology.password, topology.db) == ("app", SECRET, 0)
    assert not topology.tls
    assert RedisOptions(url.replace("redis+", "rediss+")).is_tls


def test_sentinel_url_names_service_database_and_both_passwords() -> None:
    url = (
        f"redis+sentinel://:{SECRET}@s1:26380,s2/mymaster/3"
        f"?sentinel_password=other-{SECRET}&sentinel_username=watch"
    )
    topology = RedisOptions(url).topology
    assert topology.kind is Kind.SENTINEL
    assert topology.nodes == (("s1", 26380), ("s2", 26379))  # the Sentinel port by default
    assert (topology.service, topology.db, topology.password) == ("mymaster", 3, SECRET)
    assert (topology.sentinel_username, topology.sentinel_password) == ("watch", f"other-{SECRET}")


def test_endpoint_of_a_sentinel_url_authenticates_and_selects_the_database() -> None:
    url = f"redis+sentinel://app:{SECRET}@s1:26379/mymaster/2"
    endpoint = Endpoint.of(RedisOptions(url))
    assert endpoint.locator is not None
    assert endpoint.locator.service == "mymaster"
    assert endpoint.hello == (("AUTH", "app", SECRET), ("SELECT", "2"))
    assert SECRET not in endpoint.target


@pytest.mark.parametrize(
    "url",
    [
        f"redis+cluster://:{SECRET}@h1:7000,h2:7001",
        f"redis+sentinel://user:{SECRET}@s1:26379,s2:26379/mymaster/0?sentinel_password={SECRET}",
    ],
)
def test_passwords_are_redacted_in_every_form(url: str) -> None:
    shown = redact_url(url)
    assert SECRET not in shown
    assert "***" in shown
    assert SECRET not in repr(RedisMessageBroker(url))


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("redis+cluster://", "names no host"),
        ("redis+cluster://h1:7000/2", "only database 0"),
        ("redis+cluster://h1:notaport", "is not host:port"),
        ("redis+sentinel://s1:26379", "ends with /<service name>"),
        ("redis+sentinel://s1:26379/mymaster/zero", "ends with /<service name>"),
        ("redis+quantum://h1", "unsupported Redis URL"),
    ],
)
def test_bad_topology_urls_are_refused_naming_the_fix(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RedisMessageBroker(url)
    with pytest.raises(ValueError, match=match):
        parse_topology(url, url)


def test_settings_accept_every_form_and_refuse_a_bad_one_clearly() -> None:
    for url in ("redis+cluster://h1:7000,h2:7001", "redis+sentinel://s1,s2/mymaster/0"):
        assert broker_url(url, from_env=False) == url
    with pytest.raises(ImproperlyConfigured, match="only database 0") as refused:
        broker_url(f"redis+cluster://:{SECRET}@h1:7000/5", from_env=True)
    assert "REPID_BROKER_URL" in str(refused.value)
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_wait_replicas_must_be_a_count(value: object) -> None:
    with pytest.raises(ValueError, match="wait_replicas must be an int >= 0"):
        RedisMessageBroker("redis://localhost", wait_replicas=value)  # type: ignore[arg-type]


def test_slot_map_follows_moved_for_good_and_ask_for_one_command() -> None:
    from redis.exceptions import AskError, MovedError

    from repid_django.engine.brokers.redis.cluster import SlotMap

    slots = SlotMap([("10.0.0.1", 7000)])
    slots.load([[0, 16383, [b"10.0.0.1", 7000, b"id"]]], ("10.0.0.1", 7000))
    assert slots.owner(42) == ("10.0.0.1", 7000)
    assert slots.redirected(AskError("42 10.0.0.2:7001")) == ("10.0.0.2", 7001)
    assert slots.owner(42) == ("10.0.0.1", 7000)  # ASK: this command only
    assert slots.redirected(MovedError("42 10.0.0.2:7001")) is None  # ask the map again
    assert slots.owners[42] == ("10.0.0.2", 7001)
    assert slots.owner(42) is None  # the whole map is read again before the next command
