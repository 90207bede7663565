"""A Django worker (what ``runworker`` builds) running on its own event loop in a thread, for
tests that drive it from sync code (the ORM, the test client), and a bounded wait."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from repid_django import Repid, Worker
from repid_django.connection import build_connection
from repid_django.worker.build import build_worker


def wait_for[T](probe: Callable[[], T | None], timeout: float, what: str, step: float = 0.02) -> T:
    """``probe()`` once it is truthy; ``AssertionError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def running_worker(
    ready: Callable[[Worker], Any] | None = None,
    on_stop: Callable[[], None] | None = None,
    **options: Any,
) -> Iterator[Worker]:
    """``build_worker(**options)`` on its own connection, run on a loop in a thread until the
    block ends (then stopped gracefully). ``ready(worker)`` must become truthy before the block
    runs (default: the worker has a run); ``on_stop`` is called before stopping it."""
    connection = build_connection()
    built = build_worker(connection=connection, handle_signals=(), **options)

    async def main() -> None:
        async with Repid(connection).magic(auto_disconnect=True):
            await built.run()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        check = ready or (lambda worker: worker.runner)
        wait_for(lambda: check(built), 10, "the worker to start")
        yield built
    finally:
        if on_stop is not None:
            on_stop()
        loop.call_soon_threadsafe(built.stop)
        thread.join(30)
        assert not thread.is_alive(), "the worker did not stop"
        loop.close()
