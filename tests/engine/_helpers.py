"""Helpers for engine tests: deadlines instead of sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from repid_django import Worker


async def until(predicate: Callable[[], Any], within: float = 5.0, what: str = "") -> None:
    """Wait until ``predicate()`` is true; fail the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within}s: {what or predicate}")
        await asyncio.sleep(0.002)


class Running:
    """A worker run in a background task: ``stop()`` ends it and returns the runner."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.task = asyncio.get_running_loop().create_task(worker.run())

    async def started(self) -> None:
        await until(lambda: self.worker.runner is not None or self.task.done(), what="started")
        await until(
            lambda: self.task.done() or getattr(self.worker.runner, "state", "") == "running",
            what="running",
        )

    async def stop(self, within: float = 10.0) -> Any:
        await self.started()
        self.worker.stop()
        async with asyncio.timeout(within):
            return await self.task
