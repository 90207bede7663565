"""The executors of a worker run: one shared thread pool and one process pool, made on demand.

Sync actors run in the thread pool; ``run_in_process=True`` actors in the process pool, whose
processes are started with ``spawn`` (only a reference to the function and JSON arguments cross
to them). At shutdown nothing waits for a thread or process that still runs an abandoned job (one
that timed out or was cancelled): threads are left to finish on their own, processes are
terminated after a short grace period.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

logger = logging.getLogger("repid_django.worker")

PROCESS_EXIT_WAIT = 1.0
"""Seconds pool processes get to exit at shutdown before the ones still busy are terminated."""


class Pools:
    """Lazily created executors sized from the worker's concurrency."""

    def __init__(
        self, concurrency: int, thread_size: int | None = None, process_size: int | None = None
    ) -> None:
        self.thread_size = thread_size or min(concurrency, 32)
        self.process_size = process_size or min(concurrency, os.cpu_count() or 1)
        self._threads: ThreadPoolExecutor | None = None
        self._processes: ProcessPoolExecutor | None = None

    def threads(self) -> Executor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.thread_size, thread_name_prefix="repid-actor")
        return self._threads

    def processes(self) -> Executor:
        if self._processes is None:
            self._processes = ProcessPoolExecutor(
                self.process_size, mp_context=multiprocessing.get_context("spawn")
            )
        return self._processes

    async def shutdown(self) -> None:
        threads, processes = self._threads, self._processes
        self._threads = self._processes = None
        if threads is not None:
            # Never wait here: a sync actor that timed out may still hold its thread.
            threads.shutdown(wait=False, cancel_futures=True)
        if processes is not None:
            children = list((getattr(processes, "_processes", None) or {}).values())
            processes.shutdown(wait=False, cancel_futures=True)
            await asyncio.to_thread(_reap, children, PROCESS_EXIT_WAIT)


def _reap(children: list[Any], wait: float) -> None:
    """Join pool processes; terminate those still busy with an abandoned job after ``wait``."""
    deadline = time.monotonic() + wait
    for child in children:
        child.join(max(deadline - time.monotonic(), 0.0))
    for child in children:
        if child.is_alive():
            logger.warning("terminating pool process %s: its job was abandoned", child.pid)
            child.terminate()
            child.join(1.0)
