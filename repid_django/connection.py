"""The process's default connection, built from ``settings.REPID``.

``AppConfig.ready()`` calls :func:`install`, which makes the connection the engine's process-wide
default, so ``Job(...).enqueue()`` in a view needs no ``app.magic()``. Nothing connects then:
clients are made on first use, a thread-safe sync one for sync views, commands and threads, and
one per event loop for async views and ASGI servers; a forked child (gunicorn ``--preload``)
makes its own. Each enqueue fails after ``ENQUEUE_TIMEOUT`` seconds at most. Changing ``REPID``
with ``override_settings`` (tests) rebuilds it.
"""

from __future__ import annotations

import atexit
import logging
import threading

from . import conf
from .engine.brokers.redis.broker import RedisMessageBroker
from .engine.connection import Connection, set_default_connection
from .metrics.enqueue import CountingRedisBroker

logger = logging.getLogger("repid_django")
_lock = threading.Lock()
_connection: Connection | None = None


def build_broker(settings: conf.RepidSettings | None = None) -> RedisMessageBroker:
    """A Redis broker configured from the settings (not connected); its enqueues count into
    ``repid_jobs_enqueued_total`` (:mod:`repid_django.metrics.enqueue`)."""
    s = settings or conf.get_settings()
    try:
        return CountingRedisBroker(
            s.broker_url,
            prefix=s.prefix,
            lease_ttl=s.lease_ttl,
            reaper_interval=s.reaper_interval,
            max_lost=s.max_lost,
            max_message_size=s.max_message_size,
            result_ttl=s.result_ttl,
            enqueue_timeout=s.enqueue_timeout,
            embedded_dir=s.embedded_dir,
            hang_grace=s.hang_grace,
            wait_replicas=s.wait_replicas,
        )
    except ValueError as exc:
        raise conf.SettingError(
            "BROKER_URL", "REPID['BROKER_URL']", str(exc), "Fix the URL or its options."
        ) from None


def build_connection(settings: conf.RepidSettings | None = None) -> Connection:
    """A new connection from the settings (not connected)."""
    return Connection(build_broker(settings))


def install() -> Connection:
    """Build the default connection and hand it to the engine (idempotent)."""
    global _connection  # noqa: PLW0603 - the process's one default connection
    with _lock:
        if _connection is None:
            _connection = build_connection()
            set_default_connection(_connection)
        return _connection


def get_default_connection() -> Connection:
    """The process's default connection (installed on first use if needed)."""
    return _connection or install()


def reset() -> None:
    """Close the default connection and forget it; the next use builds a new one."""
    global _connection
    with _lock:
        old, _connection = _connection, None
        set_default_connection(None)
    if old is not None:
        old.close()


def install_if_valid() -> Connection | None:
    """:func:`install`, or ``None`` when the settings are invalid (``check`` reports them and
    ``runworker`` refuses to start with the same message)."""
    try:
        return install()
    except conf.SettingError as exc:
        logger.error("repid_django is not configured: %s", exc)
        return None


def _rebuild() -> None:
    reset()
    install_if_valid()


conf.on_change(_rebuild)


@atexit.register
def _close_at_exit() -> None:
    connection = _connection
    if connection is not None:
        connection.close()
