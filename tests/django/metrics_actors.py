"""Actors of the metrics tests: a known mix of outcomes (see ``test_metrics_worker.py``)."""

from __future__ import annotations

import asyncio
import time

from repid_django import Router

router = Router()

ATTEMPTS: dict[str, int] = {}
"""``m_flaky`` runs per key."""
EVENTS: dict[str, float] = {}
"""``"<tag> started"`` -> ``time.monotonic()`` (``m_hang``)."""


@router.actor(name="m_ok")
async def ok(n: int) -> None:
    return None


@router.actor(name="m_flaky", retry_policy=lambda retry_number=1: 0.05)
async def flaky(key: str) -> str:
    """Fails its first run, then succeeds."""
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] == 1:
        raise RuntimeError(f"first run of {key} fails")
    return "done"


@router.actor(name="m_boom")
async def boom() -> None:
    raise ValueError("always fails")


@router.actor(name="m_hang")
async def hang(tag: str) -> None:
    """Runs for a minute unless cancelled."""
    EVENTS[f"{tag} started"] = time.monotonic()
    await asyncio.sleep(60)
