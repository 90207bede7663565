"""The executors of a worker run: one shared thread pool and one process pool, made on demand.

Sync actors run in the thread pool; ``run_in_process=True`` actors in killable child processes
(:class:`~.procs.ProcessSlots`, started with ``spawn``: only a reference to the function and
JSON arguments cross to them). A process whose job is abandoned (timed out, cancelled) is
terminated at once. At shutdown nothing waits for a thread that still runs an abandoned job:
threads are left to finish on their own.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Executor, ThreadPoolExecutor

from .procs import ProcessSlots

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
        self._processes: ProcessSlots | None = None

    def threads(self) -> Executor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.thread_size, thread_name_prefix="repid-actor")
        return self._threads

    def processes(self) -> ProcessSlots:
        if self._processes is None:
            self._processes = ProcessSlots(self.process_size)
        return self._processes

    async def shutdown(self) -> None:
        threads, processes = self._threads, self._processes
        self._threads = self._processes = None
        if threads is not None:
            # Never wait here: a sync actor that timed out may still hold its thread.
            threads.shutdown(wait=False, cancel_futures=True)
        if processes is not None:
            await processes.shutdown()
