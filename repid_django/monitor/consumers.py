"""The WebSocket consumer that pushes a monitor snapshot to staff users.

Users who may not watch (see :mod:`.access`: anonymous, non-staff, or staff without the view
permission) are accepted and closed at once with code 4403 (a close code the browser can see,
unlike a refused handshake). A user who may gets a snapshot at once, then one every
``interval`` seconds while connected; a ``{"type": "refresh"}`` message asks for one now, but
never sooner than ``min_gap`` seconds after the previous one (a client cannot make the server
build snapshots back to back). Before each push the session and the user are read again: a
logout, a password change, a lost permission or a deactivated account closes the socket with
4403. Snapshots are built in a thread (they read the ORM and wait on the broker), never on the
loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db import close_old_connections

from .access import may_watch, session_user
from .snapshot import Snapshot, build_snapshot

logger = logging.getLogger(__name__)

FORBIDDEN = 4403
"""Close code for a user who may not watch the monitor (403 in the 4000-4999 private range)."""
DEFAULT_INTERVAL = 1.0
MIN_GAP = 0.5
"""The least seconds between two snapshots of one connection, however often it asks."""


def _build(scope: dict[str, Any]) -> Snapshot | None:
    """A snapshot, or ``None`` when the connection's user may no longer watch (when the
    database cannot say, an error snapshot without any figure: the socket stays open)."""
    try:
        if not may_watch(session_user(scope)):
            return None
        return build_snapshot()
    except Exception as exc:  # the database or the settings failed: say so, keep the socket
        logger.warning("monitor snapshot failed: %s", exc, exc_info=True)
        return {"type": "snapshot", "stale": True, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        # Here, not only in channels' wrapper: asgiref >= 3.10 runs this function in a copy of
        # the context, where the connection it opened is invisible to the wrapper's close (the
        # connection leaked, until its thread ended; psycopg warns about it).
        close_old_connections()


async def _snapshot(scope: dict[str, Any]) -> Snapshot | None:
    """A snapshot built in a worker thread, closing stale database connections around it
    (``None``: the user may no longer watch).

    Not thread-sensitive: a slow broker read (up to its timeout when Redis is down) must not
    hold up the one thread that the server's synchronous views share.
    """
    snapshot: Snapshot | None = await database_sync_to_async(_build, thread_sensitive=False)(scope)
    return snapshot


class MonitorConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # untyped base
    """Pushes :func:`~repid_django.monitor.snapshot.build_snapshot` every ``interval`` seconds.

    ``MonitorConsumer.as_asgi(interval=5.0)`` changes the period.
    """

    interval: float = DEFAULT_INTERVAL
    min_gap: float = MIN_GAP

    def __init__(
        self,
        *args: Any,
        interval: float | None = None,
        min_gap: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if interval is not None:
            if interval <= 0:
                raise ValueError(f"interval must be positive seconds, not {interval!r}")
            self.interval = float(interval)
        if min_gap is not None:
            if min_gap < 0:
                raise ValueError(f"min_gap must be seconds >= 0, not {min_gap!r}")
            self.min_gap = float(min_gap)
        self._pusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def connect(self) -> None:
        await self.accept()
        if not await database_sync_to_async(may_watch)(self.scope.get("user")):
            await self.close(code=FORBIDDEN)
            return
        self._pusher = asyncio.create_task(self._push())

    async def _push(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while True:
                snapshot = await _snapshot(self.scope)
                if snapshot is None:  # logged out (or lost the right) since the last push
                    await self.close(code=FORBIDDEN)
                    return
                await self.send_json(snapshot)
                sent = loop.time()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
                    # asked for one now: not sooner than min_gap after the last (throttle)
                    await asyncio.sleep(max(0.0, sent + self.min_gap - loop.time()))
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
