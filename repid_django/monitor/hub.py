"""One snapshot per interval per process, shared by every open monitor socket.

A :class:`SnapshotHub` per event loop and per ``(interval, min_gap)`` (the route's parameters)
runs one producer task while at least one socket is subscribed: every ``interval`` seconds (or
sooner when a socket asks for a refresh, or a new one joins, but never sooner than ``min_gap``
after the previous computation) it makes one trip to a thread, which

* reads each distinct session of the subscribers afresh (:func:`.access.session_user`) and
  checks that its user may still watch (one check per session, however many tabs share it);
* builds the snapshot once (:func:`.snapshot.build_snapshot`) if anyone may watch;
* closes the thread's old database connections.

The snapshot does not depend on the user: everyone who may watch sees the same figures (one
permission, :data:`.access.VIEW_PERMISSION`), so it is encoded to JSON once and the same text
goes to every socket whose session passed; a socket whose session did not gets ``None`` (the
consumer closes it with 4403). When the database cannot check a session or build the
snapshot, the sockets get an error snapshot without any figure and the producer goes on.

A new socket gets the last snapshot at once when it is younger than ``min_gap`` (its user was
checked by the consumer's ``connect`` a moment ago); otherwise it asks the producer for a fresh
one, which it gets as soon as it is built. The last socket to leave cancels the producer and
the hub forgets itself: nothing runs while no monitor is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Sequence
from typing import Any

from channels.db import database_sync_to_async
from django.db import close_old_connections

from .access import may_watch, session_user
from .snapshot import Snapshot, build_snapshot

logger = logging.getLogger(__name__)

Delivery = str | None
"""What a socket is handed: the snapshot's JSON text, or ``None`` when it may no longer watch."""

_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[float, float], SnapshotHub]]
_hubs = weakref.WeakKeyDictionary()


def error_snapshot(exc: BaseException) -> Snapshot:
    """A snapshot without any figure that says what failed (the socket stays open)."""
    return {"type": "snapshot", "stale": True, "error": f"{type(exc).__name__}: {exc}"}


def _session_of(scope: dict[str, Any]) -> str:
    key = getattr(scope.get("session"), "session_key", None)
    return f"session:{key}" if key else f"scope:{id(scope)}"


def compute(scopes: Sequence[dict[str, Any]]) -> tuple[dict[str, bool | Snapshot], Snapshot | None]:
    """In a thread: the verdict per session of ``scopes`` (may watch, or an error snapshot when
    the database could not say) and the snapshot, built only if some session may watch."""
    try:
        verdicts: dict[str, bool | Snapshot] = {}
        for scope in scopes:
            session = _session_of(scope)
            if session in verdicts:
                continue
            try:
                verdicts[session] = may_watch(session_user(scope))
            except Exception as exc:
                logger.warning("monitor: could not check a session: %s", exc, exc_info=True)
                verdicts[session] = error_snapshot(exc)
        if not any(verdict is True for verdict in verdicts.values()):
            return verdicts, None
        try:
            return verdicts, build_snapshot()
        except Exception as exc:  # the database or the settings failed: say so
            logger.warning("monitor snapshot failed: %s", exc, exc_info=True)
            return verdicts, error_snapshot(exc)
    finally:
        # Here, not only in channels' wrapper: asgiref >= 3.10 runs this function in a copy of
        # the context, where the connection it opened is invisible to the wrapper's close (the
        # connection leaked, until its thread ended; psycopg warns about it).
        close_old_connections()


class Subscription:
    """One socket's place in a hub: the latest delivery, waiting to be sent."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        self.session = _session_of(scope)
        self._item: Delivery = None
        self._ready = asyncio.Event()

    def offer(self, item: Delivery) -> None:
        """Replace what waits (a slow socket skips to the newest snapshot)."""
        self._item = item
        self._ready.set()

    async def next(self) -> Delivery:
        await self._ready.wait()
        self._ready.clear()
        return self._item


class SnapshotHub:
    """The shared producer of one event loop and one ``(interval, min_gap)``; see the module
    docstring. ``computed`` counts the snapshots it built."""

    def __init__(self, interval: float, min_gap: float) -> None:
        self.interval = interval
        self.min_gap = min_gap
        self.computed = 0
        self.subscriptions: set[Subscription] = set()
        self.task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._last_start = float("-inf")
        self._latest: tuple[float, str] | None = None

    def subscribe(self, scope: dict[str, Any]) -> Subscription:
        subscription = Subscription(scope)
        self.subscriptions.add(subscription)
        latest = self._latest
        if latest is not None and self._loop.time() - latest[0] < self.min_gap:
            subscription.offer(latest[1])
        else:
            self._wake.set()
        if self.task is None or self.task.done():
            self.task = self._loop.create_task(self._run(), name="repid-monitor-snapshots")
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget ``subscription``; the last one out stops the producer (idempotent)."""
        self.subscriptions.discard(subscription)
        if self.subscriptions:
            return
        hubs = _hubs.get(self._loop, {})
        if hubs.get((self.interval, self.min_gap)) is self:
            del hubs[(self.interval, self.min_gap)]
        if self.task is not None:
            self.task.cancel()

    def refresh(self) -> None:
        """Build the next snapshot now (but not sooner than ``min_gap`` after the last)."""
        self._wake.set()

    async def _run(self) -> None:
        while self.subscriptions:
            due = self._last_start + self.interval - self._loop.time()
            if not self._wake.is_set() and due > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due):
                        await self._wake.wait()
            await asyncio.sleep(max(0.0, self._last_start + self.min_gap - self._loop.time()))
            self._wake.clear()
            self._last_start = self._loop.time()
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never seen; the next interval tries again
                logger.warning("monitor: a snapshot round failed: %s", exc, exc_info=True)
                self._fan_out({}, json.dumps(error_snapshot(exc)))

    async def _tick(self) -> None:
        checked = list(self.subscriptions)
        verdicts, snapshot = await database_sync_to_async(compute, thread_sensitive=False)(
            [subscription.scope for subscription in checked]
        )
        text = None
        if snapshot is not None:
            self.computed += 1
            text = json.dumps(snapshot)
            self._latest = (self._last_start, text)
        encoded: dict[str, Delivery] = {}
        for session, verdict in verdicts.items():
            if isinstance(verdict, dict):  # the database could not say: the error, no figure
                encoded[session] = json.dumps(verdict)
            else:  # a snapshot was built when anyone may watch
                encoded[session] = text if verdict else None
        self._fan_out(encoded, text)

    def _fan_out(self, encoded: dict[str, Delivery], text: str | None) -> None:
        """Hand each subscription its verdict's delivery; those that joined while the round
        ran (checked by their ``connect``) get the snapshot, or ask for another round."""
        for subscription in list(self.subscriptions):
            if subscription.session in encoded:
                subscription.offer(encoded[subscription.session])
            elif text is not None:
                subscription.offer(text)
            else:
                self._wake.set()


def hub_for(interval: float, min_gap: float) -> SnapshotHub:
    """The running loop's hub for these parameters (made on first use)."""
    hubs = _hubs.setdefault(asyncio.get_running_loop(), {})
    hub = hubs.get((interval, min_gap))
    if hub is None:
        hub = hubs[(interval, min_gap)] = SnapshotHub(interval, min_gap)
    return hub


def active_hubs() -> list[SnapshotHub]:
    """The running loop's hubs that have subscribers (tests, diagnostics)."""
    return list(_hubs.get(asyncio.get_running_loop(), {}).values())
