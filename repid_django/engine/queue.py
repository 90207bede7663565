"""Queues: ``Queue(name="default")`` with ``declare()``, ``flush()`` and ``delete()``."""

from __future__ import annotations

import re

from .brokers.base import QueueStats
from .connection import Call, Connection, get_connection, run_anywhere

_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")
_VALID: set[str] = set()
"""Names already checked (a few per project): ``Job(...)`` on the hot path skips the regex."""


def validate_queue_name(name: str) -> str:
    """Return ``name`` or raise a ``ValueError`` saying which names are allowed."""
    if type(name) is str and name in _VALID:
        return name
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"invalid queue name {name!r}: use 1 to 100 letters, digits, '_', '-', '.' or ':'"
        )
    if len(_VALID) < 1024:
        _VALID.add(name)
    return name


class Queue:
    """A named queue. Its methods return a :class:`Call`: await it in async code; in sync code
    the call has already run."""

    __slots__ = ("_connection", "name")

    def __init__(self, name: str = "default", *, connection: Connection | None = None) -> None:
        self.name = validate_queue_name(name)
        self._connection = connection

    def __repr__(self) -> str:
        return f"Queue(name={self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Queue) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Queue", self.name))

    @property
    def connection(self) -> Connection:
        return self._connection or get_connection()

    def declare(self) -> Call[None]:
        """Create the queue; declaring it again is harmless."""
        return run_anywhere(lambda c: c.message_broker.declare_queue(self.name), self._connection)

    def flush(self) -> Call[int]:
        """Remove the queue's waiting messages; returns how many were removed."""
        return run_anywhere(lambda c: c.message_broker.flush_queue(self.name), self._connection)

    def delete(self) -> Call[None]:
        """Remove the queue, its messages and its dead letters."""
        return run_anywhere(lambda c: c.message_broker.delete_queue(self.name), self._connection)

    def stats(self) -> Call[QueueStats]:
        """Ready, delayed, running and dead counts."""
        return run_anywhere(lambda c: c.message_broker.queue_stats(self.name), self._connection)
