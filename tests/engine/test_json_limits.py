"""What JSON carries here (64-bit ints, 253 levels of nesting) is checked where values enter.

An actor's return value beyond those limits used to pass ``check_json`` and then fail the
encoding of the whole batch of outcomes it was finished with: every job of the batch stayed
leased and ran again. Job arguments beyond them were refused by orjson alone, with its own
message (and written by the stdlib path, for a worker to dead-letter).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from repid_django import Connection, Job, RedisMessageBroker, Repid, Router, Worker
from repid_django.engine.brokers.redis.keys import queue_base
from repid_django.engine.serializer import MAX_INT, MAX_NESTING, MIN_INT, check_json

from ._helpers import Running, until


def nest(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (nest(MAX_NESTING + 1), "more than 253 levels"),
        ({"a": nest(MAX_NESTING)}, "more than 253 levels"),
        (MAX_INT + 1, "int of 65 bits"),
        ([MIN_INT - 1], "int of 64 bits"),
        (10**5000, "int of 16610 bits"),  # no str() of it: that would raise ValueError
    ],
    ids=["254 levels", "254 levels in a dict", "2**64", "-2**63 - 1", "5000 digits"],
)
def test_check_json_refuses_what_orjson_cannot_write(value: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        check_json(value, "value")


def test_check_json_takes_the_limits_themselves() -> None:
    check_json([nest(MAX_NESTING - 1), MIN_INT, MAX_INT], "value")


@pytest.mark.parametrize(
    "args",
    [{"n": MAX_INT + 1}, [MIN_INT - 1], {"deep": nest(MAX_NESTING)}, [nest(MAX_NESTING)]],
)
def test_a_job_refuses_args_beyond_the_limits_naming_them(args: Any) -> None:
    with pytest.raises(TypeError, match=r"job 'x': args\["):
        Job("x", args=args).to_message()


@pytest.mark.redis
async def test_a_return_value_beyond_the_limits_fails_its_job_alone(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    returned = {"deep": nest(MAX_NESTING + 1), "huge": MAX_INT + 1}
    ran: list[str] = []
    router = Router()

    @router.actor(name="give")
    async def give(what: str) -> Any:
        ran.append(what)
        return returned.get(what, what)

    broker = RedisMessageBroker(redis_url, prefix=key_prefix)
    base = queue_base(key_prefix, "default")
    async with Repid(Connection(broker)).magic(auto_disconnect=True):
        ids = {}
        for what in ("deep", "ok", "huge", "fine"):
            ids[what] = await Job("give", args={"what": what}).enqueue()  # results: auto
        running = Running(Worker(routers=[router], handle_signals=[]))
        await until(lambda: redis_client.hlen(base + "msgs") == 0, what="every job finished")
        runner = await running.stop()
        dead = {d.id: d for d in await broker.list_dead("default")}
        results = {what: await broker.get_result(i) for what, i in ids.items()}
    assert sorted(ran) == ["deep", "fine", "huge", "ok"]  # each once: nothing ran again
    assert runner.processed == 4
    assert set(dead) == {ids["deep"], ids["huge"]}
    assert "more than 253 levels" in (dead[ids["deep"]].error or "")
    assert "int of 65 bits" in (dead[ids["huge"]].error or "")
    assert results["ok"] is not None
    assert results["ok"].data == "ok"
    assert results["fine"] is not None
    assert results["fine"].data == "fine"
    assert redis_client.zcard(base + "leases") == 0
