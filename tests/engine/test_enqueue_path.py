"""The enqueue hot path: fast argument check, message building, ids and the connected fast path."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest

from repid_django import Connection, InMemoryMessageBroker, Job, PrioritiesT, enqueue_many
from repid_django.engine.message import Message, decode, encode, new_id, new_ids, new_message
from repid_django.engine.serializer import check_json, is_plain_flat


class Color(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


@dataclasses.dataclass
class Point:
    x: int


def _valid_uuid4_hex(text: str) -> bool:
    parsed = uuid.UUID(hex=text)
    return parsed.hex == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_ids_are_uuid4_hex_and_distinct() -> None:
    ids = [new_id() for _ in range(500)] + new_ids(500)
    assert all(_valid_uuid4_hex(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert new_ids(0) == []


def test_new_message_equals_the_dataclass_constructor() -> None:
    values: dict[str, Any] = {
        "id": "abc",
        "actor": "a",
        "queue": "q",
        "priority": 5,
        "args": {"x": 1},
        "retries": 2,
        "timeout": 3.0,
        "ttl": 4.0,
        "run_at": 5.0,
        "deferred_by": 6.0,
        "store_result": False,
        "result_ttl": 7.0,
        "unique": True,
        "enqueued_at": 8.0,
    }
    fast = new_message(**values)
    slow = Message(**values)
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert fast.attempt == 0
    assert fast.unknown_count == 0
    assert encode(fast) == encode(slow)
    assert decode(encode(fast)) == slow
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.id = "other"  # type: ignore[misc]


REFUSED: list[object] = [
    float("nan"),
    float("inf"),
    -float("inf"),
    datetime.now(UTC),
    date(2020, 1, 1),
    uuid.uuid4(),
    Color.RED,
    Point(1),
    b"bytes",
    {1, 2},
    object(),
]


@pytest.mark.parametrize("value", REFUSED, ids=repr)
def test_fast_check_never_accepts_what_check_json_refuses(value: object) -> None:
    with pytest.raises(TypeError):
        check_json(value, "v")
    assert not is_plain_flat({"v": value})
    assert not is_plain_flat([value])
    assert not is_plain_flat({1: "x"})


def test_fast_check_accepts_exact_plain_values() -> None:
    assert is_plain_flat({"s": "x", "i": 1, "f": 1.5, "b": True, "n": None})
    assert is_plain_flat([1, "x", 0.0, False, None])
    assert not is_plain_flat({"nested": [1]})  # nested values take the full check


def _expected_error(name: str, args: Any) -> str:
    """The message the full (pre-existing) check gives for these arguments."""
    job = Job(name)
    with pytest.raises(TypeError) as caught:
        job._check_args(args)
    return str(caught.value)


@pytest.mark.parametrize("value", REFUSED, ids=repr)
@pytest.mark.usefixtures("conn", "queue")
async def test_refused_values_name_the_argument_and_send_nothing(
    broker: InMemoryMessageBroker, value: object
) -> None:
    for args in ({"when": value}, [1, value]):
        expected = _expected_error("report", args)
        place = "'when'" if isinstance(args, dict) else "1"
        assert expected.startswith(f"job 'report': args[{place}] ")
        with pytest.raises(TypeError) as caught:
            await Job("report", args=args).enqueue()
        assert str(caught.value) == expected
        with pytest.raises(TypeError) as caught:
            await enqueue_many([Job("ok", args={"x": 1}), Job("report", args=args)])
        assert str(caught.value) == expected
    with pytest.raises(TypeError, match=r"args key 1 of job 'report' must be a str"):
        await Job("report", args={1: "x"}).enqueue()  # type: ignore[dict-item]
    assert (await broker.queue_stats("default")).ready == 0
    assert broker.counters().enqueued == 0


@pytest.mark.usefixtures("conn", "queue")
async def test_values_outside_the_fast_check_still_go_through(
    broker: InMemoryMessageBroker,
) -> None:
    args: dict[str, Any] = {"level": Level.HIGH, "name": Name("n"), "nested": {"a": [1, 2.5]}}
    job = Job("any", args=args)
    message = job.to_message(now=100.0)
    assert message.args is args
    await job.enqueue()
    await enqueue_many([Job("any", args=[Level.HIGH, (1, 2)])])
    assert (await broker.queue_stats("default")).ready == 2


def test_to_message_fields_match_the_job() -> None:
    job = Job(
        "a",
        queue="q",
        priority=PrioritiesT.HIGH,
        args=(1, 2),
        retries=3,
        timeout=5,
        deferred_by=10,
        ttl=20,
        store_result=False,
        result_ttl=None,
    )
    message = job.to_message(now=1000.0)
    expected = Message(
        id=message.id,
        actor="a",
        queue="q",
        priority=50,
        args=[1, 2],
        retries=3,
        timeout=5.0,
        ttl=20.0,
        run_at=1010.0,
        deferred_by=10.0,
        store_result=False,
        result_ttl=None,
        unique=False,
        enqueued_at=1000.0,
    )
    assert message == expected
    assert _valid_uuid4_hex(message.id)
    defaults = Job("b", id_="fixed").to_message(now=1.0)
    assert defaults == Message(
        id="fixed",
        actor="b",
        queue="default",
        priority=0,
        timeout=600.0,
        store_result=None,  # auto: a result only when worth reading
        result_ttl=None,  # the broker's RESULT_TTL
        unique=True,
        enqueued_at=1.0,
    )
    assert type(defaults.priority) is int
    assert type(Job("c", priority=PrioritiesT.MEDIUM).priority) is int


async def test_enqueue_many_sets_last_ids_and_keeps_fixed_ids(
    conn: Connection, broker: InMemoryMessageBroker
) -> None:
    await conn.message_broker.declare_queue("default")
    jobs = [Job("a"), Job("b", id_="mine"), Job("c")]
    ids = await enqueue_many(jobs)
    assert ids[1] == "mine"
    assert [job.last_id for job in jobs] == ids
    assert _valid_uuid4_hex(ids[0])
    assert _valid_uuid4_hex(ids[2])
    assert len(set(ids)) == 3


async def test_connected_fast_path_reopens_after_disconnect(
    conn: Connection, broker: InMemoryMessageBroker
) -> None:
    await conn.message_broker.declare_queue("default")
    await Job("a").enqueue()
    assert conn.is_open
    await conn.disconnect()
    assert not conn.is_open
    await Job("b").enqueue()  # opens the connection again before sending
    assert conn.is_open
    assert (await broker.queue_stats("default")).ready == 2
