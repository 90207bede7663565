"""Fixtures for engine tests on the in-memory broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from repid_django import Connection, InMemoryMessageBroker, Repid, Worker, set_default_connection

from ._helpers import Running


@pytest.fixture
def broker() -> InMemoryMessageBroker:
    return InMemoryMessageBroker()


@pytest.fixture
def conn(broker: InMemoryMessageBroker) -> Iterator[Connection]:
    """A connection to ``broker``, made the process default for the test."""
    connection = Connection(broker)
    set_default_connection(connection)
    try:
        yield connection
    finally:
        set_default_connection(None)


@pytest.fixture
def app(conn: Connection) -> Repid:
    return Repid(conn)


@pytest.fixture
async def queue(conn: Connection) -> str:
    """The declared ``default`` queue."""
    await conn.message_broker.declare_queue("default")
    return "default"


@pytest.fixture
async def start() -> AsyncIterator[Callable[[Worker], Running]]:
    """Start workers in the background; any still running at the end are forced to stop."""
    started: list[Running] = []

    def run(worker: Worker) -> Running:
        running = Running(worker)
        started.append(running)
        return running

    yield run
    for running in started:
        if not running.task.done():
            running.worker.stop(force=True)
            async with asyncio.timeout(10):
                await asyncio.gather(running.task, return_exceptions=True)
