"""Actors of the test app, declared both ways autodiscovery supports."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from repid_django import Router
from repid_django.shortcuts import actor

from .models import Note  # tasks.py may import models: it runs after the app registry is ready

router = Router()


@router.actor
async def record(tag: str = "") -> dict[str, Any]:
    """Records that it ran (a Note row) and returns the tag."""
    await Note.objects.acreate(tag=tag)
    return {"tag": tag}


@router.actor(queue="other")
def sync_record(tag: str = "") -> int:
    """A sync actor using the ORM from the worker's thread pool."""
    return int(Note.objects.create(tag=tag).pk)


@router.actor
async def noop() -> None:
    return None


@router.actor(timeout=0.2)
async def slow(seconds: float = 5.0) -> None:
    await asyncio.sleep(seconds)


@router.actor(retry_policy=lambda retry_number=1: 0)
def flaky(tag: str, fail_times: int) -> str:
    """Fails ``fail_times`` times (counted in Note rows), then succeeds."""
    failures = Note.objects.filter(tag=f"{tag}-failure").count()
    if failures < fail_times:
        Note.objects.create(tag=f"{tag}-failure")
        raise RuntimeError(f"failure {failures + 1} of {fail_times}")
    return "done"


@actor(queue="default")
def add(a: int, b: int) -> int:
    """Declared with the app-wide shortcut."""
    return a + b


@actor(run_in_process=True)
def child_pid(tag: str) -> int:
    """Runs in a child process that sets Django up and uses the ORM."""
    Note.objects.create(tag=tag)
    return os.getpid()


@actor
def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@router.actor
async def loop_kind() -> str:
    """The class of the event loop the worker runs on."""
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__name__}"
