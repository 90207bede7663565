"""The WebSocket consumer that pushes a monitor snapshot to staff users.

Users who may not watch (see :mod:`.access`: anonymous, non-staff, or staff without the view
permission) are accepted and closed at once with code 4403 (a close code the browser can see,
unlike a refused handshake). A user who may gets a snapshot at once, then one every
``interval`` seconds while connected; a ``{"type": "refresh"}`` message asks for one now, but
never sooner than ``min_gap`` seconds after the previous one (a client cannot make the server
build snapshots back to back). Before each push the session and the user are read again: a
logout, a password change, a lost permission or a deactivated account closes the socket with
4403.

The snapshots are not built per socket: every socket of the process with the same ``interval``
and ``min_gap`` subscribes to one shared producer (:mod:`.hub`), which builds one snapshot per
interval in a thread (never on the loop) and hands the same JSON text to every socket whose
session passed its check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .access import may_watch
from .hub import SnapshotHub, Subscription, hub_for

logger = logging.getLogger(__name__)

FORBIDDEN = 4403
"""Close code for a user who may not watch the monitor (403 in the 4000-4999 private range)."""
DEFAULT_INTERVAL = 1.0
MIN_GAP = 0.5
"""The least seconds between two snapshots, however often sockets ask."""


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
        self._hub: SnapshotHub | None = None
        self._subscription: Subscription | None = None

    async def connect(self) -> None:
        await self.accept()
        if not await database_sync_to_async(may_watch)(self.scope.get("user")):
            await self.close(code=FORBIDDEN)
            return
        self._hub = hub_for(self.interval, self.min_gap)
        self._subscription = self._hub.subscribe(self.scope)
        self._pusher = asyncio.create_task(self._push(self._subscription))

    async def _push(self, subscription: Subscription) -> None:
        try:
            while True:
                text = await subscription.next()
                if text is None:  # logged out (or lost the right) since the last push
                    self._leave()
                    await self.close(code=FORBIDDEN)
                    return
                await self.send(text_data=text)
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket went away under us: nothing left to push to
            logger.debug("monitor: stopped pushing snapshots", exc_info=True)
            self._leave()

    def _leave(self) -> None:
        hub, subscription = self._hub, self._subscription
        self._subscription = None
        if hub is not None and subscription is not None:
            hub.unsubscribe(subscription)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "refresh" and self._hub:
            self._hub.refresh()

    async def disconnect(self, code: int) -> None:
        self._leave()
        pusher, self._pusher = self._pusher, None
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
