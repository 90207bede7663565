"""Processes for ``run_in_process=True`` actors: one job per process at a time, killable.

A :class:`ProcessSlots` keeps up to ``size`` child processes (started with ``spawn``, on
demand), each running one job at a time: only a reference to the function and JSON cross to it
(see ``calling.run_in_child``). Unlike a ``ProcessPoolExecutor``, a job can be stopped: when
the task awaiting it is cancelled (its timeout passed, a cancel request, a forced shutdown), its
process is terminated at once and replaced by a fresh one for the next job, so an abandoned job
never keeps running, and never holds a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from .calling import run_in_child

logger = logging.getLogger("repid_django.worker")

EXIT_WAIT = 1.0
"""Seconds idle children get to exit at shutdown before they are terminated."""

Reply = tuple[bool, bytes | str]


def _child(conn: Connection) -> None:  # pragma: no cover - runs in the child process
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if item is None:
            return
        fn, payload, actor = item
        conn.send(run_in_child(fn, payload, actor))


class _Slot:
    def __init__(self, context: Any) -> None:
        parent, child = multiprocessing.Pipe()
        self.conn: Connection = parent
        self.process: BaseProcess = context.Process(
            target=_child, args=(child,), name="repid-actor-process", daemon=True
        )
        self.process.start()
        child.close()

    def kill(self) -> None:
        self.process.terminate()
        self.process.join(2.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(1.0)
        self.conn.close()


class ProcessSlots:
    """Up to ``size`` killable child processes for sync actors (see the module docstring)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._context = multiprocessing.get_context("spawn")
        self._idle: list[_Slot] = []
        self._busy: set[_Slot] = set()
        self._free = asyncio.Semaphore(size)
        self.killed = 0
        """Processes terminated because their job was abandoned."""

    async def run(self, fn: Callable[..., Any], payload: bytes, actor: str) -> Reply:
        """Run ``fn`` with JSON ``payload`` in a child; ``(ok, json or traceback text)``."""
        async with self._free:
            slot = self._idle.pop() if self._idle else await asyncio.to_thread(_Slot, self._context)
            self._busy.add(slot)
            try:
                slot.conn.send((fn, payload, actor))
                reply: Reply = await asyncio.to_thread(slot.conn.recv)
            except BaseException:
                # Cancelled (timeout, cancel request, shutdown) or the child died: this process
                # may still run the job, so it goes.
                self._busy.discard(slot)
                self.killed += 1
                await asyncio.shield(asyncio.to_thread(slot.kill))
                raise
            self._busy.discard(slot)
            self._idle.append(slot)
            return reply

    async def shutdown(self) -> None:
        """Stop the idle children; terminate the busy ones (their jobs were abandoned)."""
        idle, busy = self._idle, list(self._busy)
        self._idle, self._busy = [], set()
        for slot in idle:
            with contextlib.suppress(OSError):
                slot.conn.send(None)
        await asyncio.to_thread(_stop, idle, busy)


def _stop(idle: list[_Slot], busy: list[_Slot]) -> None:
    for slot in idle:
        slot.process.join(EXIT_WAIT)
        if slot.process.is_alive():
            slot.kill()
        slot.conn.close()
    for slot in busy:
        logger.warning("terminating actor process %s: its job was abandoned", slot.process.pid)
        slot.kill()
