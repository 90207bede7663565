"""The WebSocket consumer that pushes a monitor snapshot to staff users.

Anonymous and non-staff users are accepted and closed at once with code 4403 (a close code the
browser can see, unlike a refused handshake). A staff user gets a snapshot at once, then one
every ``interval`` seconds while connected; a ``{"type": "refresh"}`` message asks for one now.
Snapshots are built in a thread (they read the ORM and wait on the broker), never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .snapshot import Snapshot, build_snapshot

logger = logging.getLogger(__name__)

FORBIDDEN = 4403
"""Close code for a user who may not watch the monitor (403 in the 4000-4999 private range)."""
DEFAULT_INTERVAL = 1.0


def _is_staff(user: Any) -> bool:
    return bool(
        user is not None
        and getattr(user, "is_authenticated", False)
        and getattr(user, "is_active", False)
        and getattr(user, "is_staff", False)
    )


def _build() -> Snapshot:
    try:
        return build_snapshot()
    except Exception as exc:  # the database or the settings failed: say so, keep the socket
        logger.warning("monitor snapshot failed: %s", exc, exc_info=True)
        return {"type": "snapshot", "stale": True, "error": f"{type(exc).__name__}: {exc}"}


async def _snapshot() -> Snapshot:
    """A snapshot built in a worker thread, closing stale database connections around it.

    Not thread-sensitive: a slow broker read (up to its timeout when Redis is down) must not
    hold up the one thread that the server's synchronous views share.
    """
    snapshot: Snapshot = await database_sync_to_async(_build, thread_sensitive=False)()
    return snapshot


class MonitorConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # untyped base
    """Pushes :func:`~repid_django.monitor.snapshot.build_snapshot` every ``interval`` seconds.

    ``MonitorConsumer.as_asgi(interval=5.0)`` changes the period.
    """

    interval: float = DEFAULT_INTERVAL

    def __init__(self, *args: Any, interval: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if interval is not None:
            if interval <= 0:
                raise ValueError(f"interval must be positive seconds, not {interval!r}")
            self.interval = float(interval)
        self._pusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def connect(self) -> None:
        await self.accept()
        if not _is_staff(self.scope.get("user")):
            await self.close(code=FORBIDDEN)
            return
        self._pusher = asyncio.create_task(self._push())

    async def _push(self) -> None:
        try:
            while True:
                await self.send_json(await _snapshot())
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket went away under us: nothing left to push to
            logger.debug("monitor: stopped pushing snapshots", exc_info=True)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "refresh":
            self._wake.set()

    async def disconnect(self, code: int) -> None:
        pusher, self._pusher = self._pusher, None
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
