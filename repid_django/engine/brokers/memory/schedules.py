"""The in-memory broker's side of periodic schedules (one process: a dict of marks)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from ...message import Message


class InMemoryScheduleMixin:
    """``fire`` and ``schedule_marks`` for :class:`~.broker.InMemoryMessageBroker`."""

    _marks: dict[tuple[str, str], float]

    async def enqueue(self, messages: Sequence[Message]) -> list[bool]:
        raise NotImplementedError

    async def fire(self, queue: str, schedule: str, tick: float, message: Message | None) -> bool:
        marks = self.__dict__.setdefault("_marks", {})
        last = marks.get((queue, schedule))
        if last is not None and last >= tick:
            return False
        marks[(queue, schedule)] = tick
        if message is None:
            return False
        marks[(queue, ">" + schedule)] = tick
        (written,) = await self.enqueue([message])
        return written

    async def schedule_marks(self, queue: str, names: Sequence[str]) -> dict[str, float]:
        marks = self.__dict__.get("_marks", {})
        return {n: marks[(queue, n)] for n in names if (queue, n) in marks}

    async def schedule_runs(self, queue: str, names: Sequence[str]) -> dict[str, float]:
        marks = self.__dict__.get("_marks", {})
        return {n: marks[(queue, ">" + n)] for n in names if (queue, ">" + n) in marks}

    async def forget_schedule(self, queue: str, name: str) -> None:
        marks = self.__dict__.get("_marks", {})
        marks.pop((queue, name), None)
        marks.pop((queue, ">" + name), None)

    async def save_schedule(self, name: str, data: dict[str, Any]) -> None:
        self.__dict__.setdefault("_kept", {})[name] = copy.deepcopy(data)

    async def list_schedules(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self.__dict__.get("_kept", {}))

    async def remove_schedule(self, name: str) -> bool:
        return self.__dict__.get("_kept", {}).pop(name, None) is not None
