"""Hostile bodies (issue 15): whatever lands in a queue, decode refuses it with a reason or
delivers a message that runs and encodes again, and the worker goes on.

Property tests write arbitrary bytes, arbitrary JSON and valid messages with one field made
hostile (see ``_hostile.py``) on both JSON paths: through ``decode`` alone, then straight into a
real Redis queue's ``msgs`` hash and ``ready`` zset (a batch per example, claimed with the
broker's own ``claim``), then once through a real ``Worker``. Each expected verdict comes from
``_hostile.verdict``, a restatement of the wire format's rules, never from ``decode`` itself.

Bodies tried per run: 300 by decode (each on both paths); 2 x 40 batches of 1 to 12 on Redis
(about 450 bodies); 2 x 101 through a worker; 2 x 19 plain regressions: about 1,000 in all.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from repid_django import Connection, Job, RedisMessageBroker, Repid, Router, Worker
from repid_django.engine.brokers.base import DeadReason, Outcome, OutcomeKind
from repid_django.engine.brokers.redis.codec import text
from repid_django.engine.brokers.redis.keys import queue_base
from repid_django.engine.message import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_COUNT,
    MAX_SECONDS,
    Message,
    MessageDecodeError,
    decode,
    encode,
)

from ..redis_server import RedisServer
from ._helpers import Running, until
from ._hostile import PATHS, RAW_LITERALS, Body, bodies, json_path, verdict

PRI_SPAN = 2**40
"""The ready score's priority band (``lua/common.lua``): ``(100 - priority) * 2**40 + seq``."""
SMALL_MAX = 1024
"""The Redis tests' ``max_message_size``: oversized bodies stay cheap to write."""


def _beyond_64_bits(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_beyond_64_bits(v) for v in value.values())
    if isinstance(value, list):
        return any(_beyond_64_bits(v) for v in value)
    return isinstance(value, int) and not -(2**63) <= value < 2**64


def _decoded(body: bytes, max_size: int) -> Message | MessageDecodeError:
    """``decode``'s answer: a message that encodes again to itself, or the refusal."""
    try:
        message = decode(body, max_size)
    except MessageDecodeError as exc:
        return exc
    again = encode(message)
    assert decode(again, len(again)) == message
    retried = message.with_changes(attempt=message.attempt + 1, run_at=time.time())
    if message.attempt < message.retries:  # what a retry writes back decodes as well
        decode(encode(retried), len(encode(retried)) + 1)
    return message


# decode alone -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, database=None)
@given(body=bodies(), max_size=st.sampled_from([DEFAULT_MAX_MESSAGE_SIZE, 2000, 300]))
def test_decode_refuses_with_a_reason_or_accepts_what_encodes_again(
    body: Body, max_size: int
) -> None:
    expected = verdict(body, max_size)
    answers = []
    for path in PATHS:
        with json_path(path):
            answers.append(_decoded(body.body, max_size))  # anything else raised fails here
    for answer in answers:
        got = answer.reason if isinstance(answer, MessageDecodeError) else "ok"
        assert got == expected, (body.kind, answer)
        assert not isinstance(answer, MessageDecodeError) or answer.detail
    fast, slow = answers
    if isinstance(fast, Message) and isinstance(slow, Message) and not _beyond_64_bits(slow.args):
        assert fast == slow  # both paths read the same message


# straight into Redis, claimed by the broker -------------------------------------------------


def _store(client: redis.Redis, base: str, batch: list[tuple[Body, int]]) -> None:
    """Write each body as a ready message of its priority, as ``enqueue.lua`` would."""
    with client.pipeline(transaction=False) as pipe:
        for seq, (body, priority) in enumerate(batch, 1):
            pipe.hset(base + "msgs", body.stored_id, body.body)
            pipe.zadd(base + "ready", {body.stored_id: (100 - priority) * PRI_SPAN + seq})
        pipe.execute()


async def _claim_all(
    broker: RedisMessageBroker, queue: str, limit: int, ids: set[str]
) -> dict[str, Message]:
    """Claim until every id is delivered or dead-lettered; ACK what comes (as a worker would)."""
    delivered: dict[str, Message] = {}
    for _ in range(4 * len(ids) + 10):
        dead = {d.id for d in await broker.list_dead(queue, limit=1000)}
        if ids <= dead | delivered.keys():
            return delivered
        got = await broker.claim([queue], limit, 0)
        for delivery in got:
            delivered.setdefault(delivery.message.id, delivery.message)
        assert await broker.finish([Outcome(d, OutcomeKind.ACK) for d in got]) == [True] * len(got)
    pytest.fail(f"not every message was claimed or dead-lettered: {ids - delivered.keys()}")


async def _check_batch(
    broker: RedisMessageBroker,
    client: redis.Redis,
    batch: list[tuple[Body, int]],
    limit: int,
) -> None:
    queue = "hostile"
    base = queue_base(broker.prefix, queue)
    client.delete(*[base + part for part in ("msgs", "ready", "delayed", "dead", "dmsg", "dinfo")])
    _store(client, base, batch)
    await broker.enqueue([Message(id="after", actor="after", queue=queue, priority=-100)])
    before = time.time()
    delivered = await _claim_all(broker, queue, limit, {b.stored_id for b, _ in batch} | {"after"})
    after = time.time()
    dead = {d.id: d for d in await broker.list_dead(queue, limit=1000)}
    assert "after" in delivered, "a valid job after the hostile ones did not run"
    for body, _ in batch:
        expected = verdict(body, SMALL_MAX, queue)
        if expected != "ok":
            letter = dead.get(body.stored_id)
            assert letter is not None, (body.kind, expected)
            assert (letter.reason.value, letter.message, body.stored_id in delivered) == (
                expected,
                None,
                False,
            ), body.kind
            assert letter.raw is not None, body.kind
            assert letter.error, body.kind
            continue
        message = decode(body.body, SMALL_MAX)
        if message.expired(before):
            assert dead[body.stored_id].reason is DeadReason.EXPIRED, body.kind
            assert dead[body.stored_id].message == message
        elif not message.expired(after):
            assert delivered.get(body.stored_id) == message, body.kind
            assert body.stored_id not in dead, body.kind
    # Nothing stays leased or ready; only recurring messages (their next run) stay stored.
    assert client.zcard(base + "leases") == client.hlen(base + "tokens") == 0
    assert client.zcard(base + "ready") == 0
    recurring = {i for i, m in delivered.items() if m.deferred_by is not None}
    recurring |= {i for i, d in dead.items() if d.message and d.message.deferred_by is not None}
    assert {text(k) for k in client.hkeys(base + "msgs")} == recurring


@pytest.mark.redis
@pytest.mark.parametrize("path", PATHS)
def test_claims_dead_letter_hostile_bodies_and_go_on(
    path: str, redis_server: RedisServer, key_prefix: str, redis_client: redis.Redis
) -> None:
    # A sync test with its own loop: hypothesis runs the examples, each on this one loop.
    with asyncio.Runner() as runner:
        broker = RedisMessageBroker(
            redis_server.url, prefix=key_prefix, max_message_size=SMALL_MAX, reaper_interval=60
        )
        runner.run(broker.connect())

        @settings(max_examples=40, deadline=None, database=None)
        @given(
            batch=st.lists(
                st.tuples(bodies(queue="hostile"), st.integers(-100, 100)),
                min_size=1,
                max_size=12,
                unique_by=lambda entry: entry[0].stored_id,
            ),
            limit=st.integers(1, 5),
        )
        def check(batch: list[tuple[Body, int]], limit: int) -> None:
            with json_path(path):
                runner.run(_check_batch(broker, redis_client, batch, limit))

        try:
            check()
        finally:
            runner.run(broker.disconnect())


# regressions: one body per bug found ---------------------------------------------------------


def _body(message_id: str = "a", **fields: Any) -> bytes:
    data = Message(id=message_id, actor="x", queue="default").to_dict() | fields
    return json.dumps(data).encode()


def _raw(field: str, literal: bytes, message_id: str = "a", *, first: bool = False) -> bytes:
    """A valid body with ``field`` given once more, as the raw ``literal``."""
    valid, extra = _body(message_id), b'"' + field.encode() + b'":' + literal
    return b"{" + extra + b"," + valid[1:] if first else valid[:-1] + b"," + extra + b"}"


REFUSED: dict[str, Callable[[str], bytes]] = {
    # raised OverflowError (stdlib path: ints beyond a double)
    "timeout beyond a double": lambda i: _body(i, timeout=10**400),
    "run_at beyond a double": lambda i: _body(i, run_at=-(10**400)),
    # a worker's finish then failed (result_ttl_ms overflowed), or a priority out of band
    "result_ttl of 1e306": lambda i: _body(i, result_ttl=1e306),
    "ttl of -1": lambda i: _body(i, ttl=-1),
    "deferred_by of 0 (recurs in a hot loop)": lambda i: _body(i, deferred_by=0),
    "priority 1000": lambda i: _body(i, priority=1000),
    "attempt of 2**64": lambda i: _body(i, attempt=2**64),
    # accepted, but could not be encoded again (retry, recurring, reject)
    "args 254 levels deep": lambda i: _raw("args", b"[" * 254 + b"]" * 254, i),
    "actor with a lone surrogate": lambda i: _raw("actor", b'"\\ud800"', i),
    "args with 1e400": lambda i: _raw("args", b"[1e400]", i),
    # the stdlib path accepted what orjson refuses
    "int beyond a double in args": lambda i: _raw("args", b"[1" + b"0" * 400 + b"]", i),
    "byte order mark": lambda i: b"\xef\xbb\xbf" + _body(i),
    "UTF-16": lambda i: _body(i).decode().encode("utf-16"),
    "surrogate as UTF-8 bytes": lambda i: _raw("actor", b'"\xed\xa0\x80"', i),
    "lone surrogate, given twice": lambda i: _raw("actor", b'"\\udc00"', i, first=True),
    "1025 levels, given twice": lambda i: _raw("args", b"[" * 1024 + b"]" * 1024, i, first=True),
    # refused before, kept so
    "NaN, given twice": lambda i: _raw("timeout", b"NaN", i, first=True),
    "NaN": lambda i: _raw("timeout", b"NaN", i),
    "not an object": lambda i: b"[]",
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("make", REFUSED.values(), ids=REFUSED.keys())
def test_hostile_body_is_a_decode_error(path: str, make: Callable[[str], bytes]) -> None:
    with json_path(path), pytest.raises(MessageDecodeError) as refused:
        decode(make("a"))
    assert refused.value.reason == "decode_error"


@pytest.mark.parametrize(
    "fields",
    [
        {"timeout": MAX_SECONDS + 1},
        {"ttl": math.inf},
        {"deferred_by": math.nan},
        {"result_ttl": 1e306},
        {"retries": MAX_COUNT + 1},
    ],
)
def test_a_job_refuses_what_a_worker_would_dead_letter(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"at most|from 0 to"):
        Job("x", **fields)  # type: ignore[arg-type]
    Job("x", timeout=MAX_SECONDS, retries=MAX_COUNT)


@pytest.mark.parametrize("path", PATHS)
def test_the_last_of_a_key_given_twice_wins_when_both_are_valid(path: str) -> None:
    with json_path(path):
        assert decode(_raw("args", b'["x"]', first=True)).args is None
        assert decode(_raw("args", b'["x"]')).args == ["x"]
        assert decode(_raw("args", b"[" * 253 + b"]" * 253)).args is not None
        assert decode(_raw("actor", b'"\\ud83d\\ude00"')).actor == "\U0001f600"


@pytest.mark.redis
async def test_an_id_that_is_not_utf8_is_dead_lettered_and_the_claim_goes_on(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis
) -> None:
    # The claim used to raise UnicodeDecodeError: the batch stayed leased, and a worker
    # stopped after three such claims.
    base = queue_base(redis_broker.prefix, "default")
    redis_client.hset(base + "msgs", b"bad\xff", b"garbage")
    redis_client.zadd(base + "ready", {b"bad\xff": 0})
    await redis_broker.enqueue([Message(id="good", actor="x", queue="default", priority=-100)])
    got = await redis_broker.claim(["default"], 10, 0)
    assert [d.message.id for d in got] == ["good"]
    (dead,) = await redis_broker.list_dead("default")
    assert (dead.id, dead.reason, dead.raw) == ("bad\\xff", DeadReason.DECODE_ERROR, "garbage")
    assert redis_client.hkeys(base + "dmsg") == [b"bad\xff"]
    assert redis_client.hkeys(base + "tokens") == [b"good"]


@pytest.mark.redis
async def test_a_body_stored_under_another_id_is_a_dead_letter_without_a_message(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis
) -> None:
    base = queue_base(redis_broker.prefix, "default")
    _store(redis_client, base, [(Body("moved", "b", _body()), 0)])  # the body says "a"
    assert await redis_broker.claim(["default"], 10, 0) == []
    (dead,) = await redis_broker.list_dead("default")
    assert (dead.id, dead.reason, dead.message) == ("b", DeadReason.DECODE_ERROR, None)
    assert dead.raw is not None


# a real worker ------------------------------------------------------------------------------


def _worker_batch() -> list[tuple[Body, str]]:
    """Hostile bodies of every kind (each naming its stored id), with the expected reason."""
    made: list[tuple[Callable[[str], bytes], str]] = [
        (lambda i: b"", "decode_error"),
        (lambda i: b"\x00\xff\xfe garbage", "decode_error"),
        (lambda i: b"[]", "decode_error"),
        (lambda i: _body(i, queue="other"), "decode_error"),
        (lambda i: _body(i, enqueued_at=0.0, ttl=1.0), "expired"),
        (lambda i: _body(i, args=["x" * SMALL_MAX]), "too_large"),
        *[(make, "") for make in REFUSED.values()],  # decode errors, or too large here
    ]
    for field in ("timeout", "retries", "args"):
        for raw in RAW_LITERALS:
            made.append((functools.partial(_raw, field, raw), ""))  # as the spec says
    return [
        (Body("worker", f"h{n}", make(f"h{n}")), reason) for n, (make, reason) in enumerate(made)
    ]


@pytest.mark.redis
@pytest.mark.parametrize("path", PATHS)
async def test_a_worker_runs_every_valid_job_among_hostile_bodies(
    path: str, redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    ran: list[int] = []
    router = Router()

    @router.actor(name="ok")
    async def ok(n: int) -> int:
        ran.append(n)
        return n

    @router.actor(name="x")  # the actor of the hostile bodies that are valid
    async def x(*args: Any, **kwargs: Any) -> None:
        pass

    broker = RedisMessageBroker(redis_url, prefix=key_prefix, max_message_size=SMALL_MAX)
    base = queue_base(key_prefix, "default")
    expected = {
        b.stored_id: reason or verdict(b, SMALL_MAX, "default") for b, reason in _worker_batch()
    }
    hostile = [(b, (100, 0, -100)[n % 3]) for n, (b, _) in enumerate(_worker_batch())]
    valid = {i for i, reason in expected.items() if reason == "ok"}  # a hostile value that is valid
    with json_path(path):
        async with Repid(Connection(broker)).magic(auto_disconnect=True):
            await broker.declare_queue("default")
            _store(redis_client, base, hostile)
            redis_client.hset(base + "msgs", b"h\xff", b"an id that is not UTF-8")
            redis_client.zadd(base + "ready", {b"h\xff": 0})
            for n in range(12):
                await Job("ok", args={"n": n}, priority=(50, -50)[n % 2]).enqueue()
            running = Running(Worker(routers=[router], handle_signals=[]))
            await until(lambda: len(ran) == 12, within=10, what="every valid job ran")
            await until(lambda: redis_client.hlen(base + "msgs") == 0, what="every body handled")
            dead = {d.id: d.reason.value for d in await broker.list_dead("default", limit=1000)}
            runner = await running.stop()
    assert sorted(ran) == list(range(12))  # each valid job once
    assert runner.processed == 12 + len(valid)  # and the hostile values that are valid
    expected["h\\xff"] = "decode_error"
    assert dead == {i: reason for i, reason in expected.items() if i not in valid}
    assert redis_client.zcard(base + "leases") == redis_client.zcard(base + "ready") == 0


@pytest.mark.redis
async def test_a_burst_worker_does_not_stop_at_a_batch_of_hostile_bodies(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    ran: list[int] = []
    router = Router()

    @router.actor(name="ok")
    async def ok() -> None:
        ran.append(1)

    base = queue_base(key_prefix, "default")
    hostile = [(Body("garbage", f"h{n}", b"garbage"), 100) for n in range(300)]
    async with Repid(Connection(RedisMessageBroker(redis_url, prefix=key_prefix))).magic(
        auto_disconnect=True
    ):
        _store(redis_client, base, hostile)
        await Job("ok", priority=-100).enqueue()
        runner = await Worker(routers=[router], handle_signals=[], burst=True).run()
    assert (ran, runner.processed, redis_client.zcard(base + "ready")) == ([1], 1, 0)
