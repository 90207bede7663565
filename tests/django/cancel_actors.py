"""Actors of the pause and cancel tests (a module of their own, so that the ``run_in_process``
one is importable by name in its child process).

In-process actors note what happened in :data:`EVENTS` (monotonic times) and :data:`STARTS`;
the process actor writes its pid to a file, then works for a minute.
"""

from __future__ import annotations

import asyncio
import os
import time

from repid_django import Router, current_job, set_progress, set_progress_sync

router = Router()

EVENTS: dict[str, float] = {}
"""``"<tag> started"`` / ``"<tag> stopped"`` -> ``time.monotonic()``."""
STARTS: list[int] = []
"""The ``n`` of every run of ``counted``, in start order."""


@router.actor(name="long_async")
async def long_async(tag: str) -> str:
    """Reports progress every 0.1 s for a minute; notes when it is cancelled."""
    EVENTS[f"{tag} started"] = time.monotonic()
    try:
        for step in range(600):
            await set_progress(step / 600, f"{step} of 600 images")
            await asyncio.sleep(0.1)
    except asyncio.CancelledError:
        EVENTS[f"{tag} stopped"] = time.monotonic()
        raise
    return "ended on its own"


@router.actor(name="long_sync")
def long_sync(tag: str) -> str:
    """A cooperative sync actor: works until ``current_job().cancelled`` (a minute at most)."""
    EVENTS[f"{tag} started"] = time.monotonic()
    job = current_job()
    set_progress_sync(0.1, "rows")
    deadline = time.monotonic() + 60
    while not job.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    EVENTS[f"{tag} stopped"] = time.monotonic()
    return "stopped early" if job.cancelled else "ended on its own"


@router.actor(name="long_process", run_in_process=True)
def long_process(path: str) -> None:
    """Runs in a child process: says who it is, then works for a minute."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(str(os.getpid()))
    time.sleep(60)


@router.actor(name="counted")
async def counted(n: int) -> None:
    STARTS.append(n)
    await asyncio.sleep(0.02)
