"""Parts of the worker: the event buffer's overflow, the run's counters, and the connection that
sync actors see in their threads."""

from __future__ import annotations

from repid_django import (
    Connection,
    InMemoryMessageBroker,
    Job,
    Repid,
    Worker,
    set_default_connection,
)
from repid_django.engine.brokers.base import DeadReason, OutcomeKind
from repid_django.engine.message import Message
from repid_django.engine.results import MAX_ERROR_CHARS
from repid_django.engine.worker.calling import error_text
from repid_django.engine.worker.counters import Counters
from repid_django.engine.worker.emitter import Emitter
from repid_django.engine.worker.events import EventKind, WorkerInfo


def _info() -> WorkerInfo:
    return WorkerInfo(
        id="w",
        host="h",
        pid=1,
        queues=("default",),
        concurrency=1,
        started_at=0.0,
        at=0.0,
        processed=0,
        failed=0,
        running=0,
        state="running",
        actors=(),
    )


async def test_a_full_event_buffer_drops_its_oldest_tenth_and_counts_each_event() -> None:
    emitter = Emitter([], "w", _info, max_buffer=50)
    messages = [Message(id=f"m{i}", actor="a", queue="default") for i in range(51)]
    for message in messages:
        emitter.job(EventKind.STARTED, message)
    # The 51st event finds 50 buffered: the oldest 5 go, and 5 are counted.
    assert emitter.dropped == 5
    kept = [event.message.id for event in emitter._buffer]
    assert kept == [message.id for message in messages[5:]]


def test_a_long_error_text_keeps_its_head_and_tail_within_the_bound() -> None:
    try:
        raise ValueError("head " + "x" * 50_000 + " tail")
    except ValueError as exc:
        text = error_text(exc)
    assert len(text) <= MAX_ERROR_CHARS
    assert text.startswith("Traceback (most recent call last):")
    assert text.endswith(" tail")
    assert "characters cut ...]" in text


def test_counters_count_each_outcome() -> None:
    counters = Counters()
    counters.recorded(OutcomeKind.ACK)
    counters.recorded(OutcomeKind.RETRY, DeadReason.FAILED)
    counters.recorded(OutcomeKind.DEAD, DeadReason.FAILED)
    counters.recorded(OutcomeKind.DEAD, DeadReason.UNKNOWN_ACTOR)
    counters.recorded(OutcomeKind.REJECT)
    assert (counters.succeeded, counters.failed, counters.retried) == (1, 2, 1)
    assert (counters.dead, counters.rejected) == (2, 1)


async def test_a_sync_actor_enqueues_over_the_workers_current_connection() -> None:
    """A sync actor runs in a thread of the pool, with the context of the worker's task: the
    connection made current by ``app.magic()`` is the one it enqueues over, not the default."""
    default_broker, magic_broker = InMemoryMessageBroker(), InMemoryMessageBroker()
    default = Connection(default_broker)
    for broker in (default_broker, magic_broker):
        await broker.declare_queue("default")
        await broker.declare_queue("later")
    worker = Worker(burst=True, handle_signals=[], connection=None)
    sent: list[str] = []

    @worker.actor
    def fan_out() -> None:
        sent.append(Job("follow_up", queue="later").enqueue().value)

    set_default_connection(default)
    try:
        async with Repid(Connection(magic_broker)).magic():
            await Job("fan_out").enqueue()
            runner = await worker.run()
    finally:
        set_default_connection(None)
    assert runner.succeeded == 1
    assert len(sent) == 1
    assert (await magic_broker.queue_stats("later")).ready == 1
    assert (await default_broker.queue_stats("later")).ready == 0
    waiting = await magic_broker.list_messages("later")
    assert [message.id for message in waiting] == sent
