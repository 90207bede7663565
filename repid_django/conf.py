"""The ``REPID`` settings dict, its defaults, and overrides from the environment.

Every key can be set in ``settings.REPID`` and overridden from the environment as
``REPID_<KEY>`` (read with django-environ). **The environment wins** over the settings dict, so a
deployment can point the same code at another Redis without editing settings::

    REPID = {
        "BROKER_URL": "redis://localhost:6379/0",  # None (default): the embedded Redis
        "CONCURRENCY": 50,
    }
    # $ REPID_BROKER_URL=rediss://:secret@redis.example.com:6380/0 python manage.py runworker

=========================  =================  ===============================================
Key                        Default            Meaning
=========================  =================  ===============================================
``BROKER_URL``             ``None``           ``redis://``, ``rediss://`` or ``unix://`` URL;
                                              ``None`` starts/uses the embedded Redis
``PREFIX``                 ``"repid"``        prefix of every Redis key
``QUEUES``                 ``None``           queues ``runworker`` consumes by default
                                              (``None``: every queue its actors listen on)
``CONCURRENCY``            ``50``             jobs a worker runs at once
``GRACEFUL_SHUTDOWN_TIME`` ``25.0``           seconds running jobs get to finish on SIGTERM
``LEASE_TTL``              ``30.0``           seconds a claimed job's lease lasts without a
                                              heartbeat (then another worker may run it)
``REAPER_INTERVAL``        ``5.0``            seconds between scans for expired leases
``MAX_LOST``               ``3``              lost leases before a job is dead-lettered
                                              as ``worker_lost``
``MAX_MESSAGE_SIZE``       ``524288``         bytes; bigger jobs are refused at enqueue
``RESULT_TTL``             ``3600.0``         seconds results are kept (when the job
                                              does not say); jobs store one only when
                                              useful (``store_result``, see the docs)
``ENQUEUE_TIMEOUT``        ``2.0``            seconds an enqueue may take in all (connect,
                                              retries, reply) before it fails with a
                                              ``ConnectionError``: a web request never
                                              hangs on a Redis that does not answer
``MIRROR``                 ``True``           write jobs, dead letters, workers and queue
                                              depths to the ORM (the admin reads them)
``MIRROR_FLUSH_INTERVAL``  ``1.0``            seconds between mirror batches
``MIRROR_RETENTION``       ``604800.0``       seconds (or a timedelta) finished jobs, dead
                                              letters and workers are kept; ``None``: all
``EMBEDDED_DIR``           ``None``           folder whose ``.repid/`` holds the embedded
                                              Redis (``None``: ``BASE_DIR``, else the
                                              current directory)
``SCHEDULES``              ``{}``             periodic schedules, name -> ``{"actor": ...,
                                              "cron": ...}`` (docs/schedules.md); from
                                              the environment as JSON
``QUEUE_LIMITS``           ``{}``             queue -> ``{"concurrency": 5, "rate":
                                              "100/m"}``: limits across all workers, set
                                              by ``runworker`` (docs/engine.md); JSON
``HANG_GRACE``             ``30.0``           seconds beyond a job's timeout that a worker
                                              whose event loop stopped keeps its lease
``WAIT_REPLICAS``          ``0``              replicas an enqueue waits for (``WAIT``)
                                              before it returns; 0: none (docs/production)
``METRICS_AUTH``           ``None``           who may read the metrics view (``None``:
                                              staff); see ``repid_django.metrics.auth``
=========================  =================  ===============================================

A bad value raises :class:`~django.core.exceptions.ImproperlyConfigured` naming the key and the
fix; ``manage.py check`` reports the same problems as ``repid_django.E00x`` errors.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from .conf_parse import (
    ENV_PREFIX,
    SettingError,
    broker_url,
    mirror,
    number,
    prefix,
    queue_limits,
    queues,
    schedules,
    where,
)
from .engine.limits import Limits

__all__ = [
    "DEFAULTS",
    "ENV_PREFIX",
    "RepidSettings",
    "SettingError",
    "apply_time_zone",
    "get_settings",
    "load",
    "on_change",
    "raw_settings",
    "reset",
]

DEFAULTS: dict[str, Any] = {
    "BROKER_URL": None,
    "PREFIX": "repid",
    "QUEUES": None,
    "CONCURRENCY": 50,
    "GRACEFUL_SHUTDOWN_TIME": 25.0,
    "LEASE_TTL": 30.0,
    "REAPER_INTERVAL": 5.0,
    "MAX_LOST": 3,
    "MAX_MESSAGE_SIZE": 512 * 1024,
    "RESULT_TTL": 3_600.0,
    "ENQUEUE_TIMEOUT": 2.0,
    "MIRROR": True,
    "MIRROR_FLUSH_INTERVAL": 1.0,
    "MIRROR_RETENTION": 7 * 86_400.0,
    "EMBEDDED_DIR": None,
    "SCHEDULES": None,
    "QUEUE_LIMITS": None,
    "HANG_GRACE": 30.0,
    "WAIT_REPLICAS": 0,
    "METRICS_AUTH": None,
}


@dataclass(frozen=True, slots=True)
class RepidSettings:
    """The resolved, validated settings (defaults < ``settings.REPID`` < environment)."""

    broker_url: str | None
    prefix: str
    queues: tuple[str, ...] | None
    concurrency: int
    graceful_shutdown_time: float
    lease_ttl: float
    reaper_interval: float
    max_lost: int
    max_message_size: int
    result_ttl: float
    enqueue_timeout: float
    mirror: bool
    mirror_flush_interval: float
    mirror_retention: float | None
    embedded_dir: Path
    schedules: Mapping[str, Any]
    """``REPID["SCHEDULES"]`` as given (parsed by ``repid_django.worker.schedules``)."""
    queue_limits: Mapping[str, Limits]
    hang_grace: float
    wait_replicas: int = 0


def _env_value(key: str, raw: str) -> Any:
    """Parse ``REPID_<KEY>`` with django-environ's casts for the key's type."""
    import environ

    env = environ.Env()
    name = ENV_PREFIX + key
    if key in ("BROKER_URL", "EMBEDDED_DIR", "MIRROR_RETENTION") and raw.strip().lower() in (
        "",
        "none",
        "null",
    ):
        return None
    if key == "QUEUES":
        return [item for item in env.list(name) if item] or None
    if key in ("SCHEDULES", "QUEUE_LIMITS", "METRICS_AUTH"):
        try:
            return env.json(name)
        except ValueError as exc:
            raise SettingError(
                key, where(key, True), f"is not JSON ({exc})", 'Use {"name": {"actor": ...}}.'
            ) from None
    if key == "MIRROR":
        if raw.strip().lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise SettingError(key, where(key, True), f"{raw!r} is not a boolean", "Use 1 or 0.")
        return env.bool(name)
    return env.str(name)


def _dir(value: Any, from_env: bool) -> Path:
    if value is None:
        base = getattr(_django_settings(), "BASE_DIR", None)
        return Path(base if base is not None else os.getcwd())
    if not isinstance(value, str | os.PathLike):
        raise SettingError(
            "EMBEDDED_DIR",
            where("EMBEDDED_DIR", from_env),
            f"{value!r} is not a path",
            "Use a folder path (str or pathlib.Path), or None for BASE_DIR.",
        )
    return Path(value)


def _django_settings() -> Any:
    from django.conf import settings

    return settings


def raw_settings() -> tuple[dict[str, Any], set[str]]:
    """The merged raw values and the keys that came from the environment.

    Raises :class:`SettingError` when ``settings.REPID`` is not a dict or has an unknown key.
    """
    configured = getattr(_django_settings(), "REPID", None)
    if configured is None:
        configured = {}
    if not isinstance(configured, Mapping):
        raise SettingError(
            "REPID", "settings.REPID", f"is a {type(configured).__name__}", "Make it a dict."
        )
    merged = dict(DEFAULTS)
    for key, value in configured.items():
        if key not in DEFAULTS:
            close = difflib.get_close_matches(str(key), DEFAULTS, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Known keys: {', '.join(DEFAULTS)}."
            raise SettingError(str(key), "settings.REPID", f"unknown key {key!r}", hint)
        merged[key] = value
    from_env: set[str] = set()
    for key in DEFAULTS:
        raw = os.environ.get(ENV_PREFIX + key)
        if raw is not None:
            merged[key] = _env_value(key, raw)
            from_env.add(key)
    return merged, from_env


def load() -> RepidSettings:
    """Resolve and validate the settings (not cached; see :func:`get_settings`)."""
    raw, env = raw_settings()

    def num(key: str, *, integer: bool = False, minimum: float = 0, zero: bool = False) -> float:
        return number(key, raw[key], key in env, integer=integer, minimum=minimum, allow_zero=zero)

    settings = RepidSettings(
        broker_url=broker_url(raw["BROKER_URL"], "BROKER_URL" in env),
        prefix=prefix(raw["PREFIX"], "PREFIX" in env),
        queues=queues(raw["QUEUES"], "QUEUES" in env),
        concurrency=int(num("CONCURRENCY", integer=True, minimum=1)),
        graceful_shutdown_time=num("GRACEFUL_SHUTDOWN_TIME", zero=True),
        lease_ttl=num("LEASE_TTL"),
        reaper_interval=num("REAPER_INTERVAL"),
        max_lost=int(num("MAX_LOST", integer=True, minimum=1)),
        max_message_size=int(num("MAX_MESSAGE_SIZE", integer=True, minimum=64)),
        result_ttl=num("RESULT_TTL"),
        enqueue_timeout=num("ENQUEUE_TIMEOUT"),
        mirror=mirror(raw["MIRROR"], "MIRROR" in env),
        mirror_flush_interval=num("MIRROR_FLUSH_INTERVAL"),
        mirror_retention=None if raw["MIRROR_RETENTION"] is None else num("MIRROR_RETENTION"),
        embedded_dir=_dir(raw["EMBEDDED_DIR"], "EMBEDDED_DIR" in env),
        schedules=schedules(raw["SCHEDULES"], "SCHEDULES" in env),
        queue_limits=queue_limits(raw["QUEUE_LIMITS"], "QUEUE_LIMITS" in env),
        hang_grace=num("HANG_GRACE"),
        wait_replicas=int(num("WAIT_REPLICAS", integer=True, zero=True)),
    )
    if settings.reaper_interval > settings.lease_ttl:
        raise SettingError(
            "REAPER_INTERVAL",
            where("REAPER_INTERVAL", "REAPER_INTERVAL" in env),
            f"{settings.reaper_interval:g}s is longer than LEASE_TTL ({settings.lease_ttl:g}s)",
            "Scan for lost leases more often than they expire, e.g. LEASE_TTL / 6.",
        )
    return settings


@lru_cache(maxsize=1)
def get_settings() -> RepidSettings:
    """The process's settings, validated once (cleared when ``REPID`` changes in tests)."""
    return load()


_listeners: list[Callable[[], None]] = []


def on_change(callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever the settings cache is cleared (``override_settings``)."""
    _listeners.append(callback)


def reset() -> None:
    """Forget the cached settings (after changing ``REPID`` or ``REPID_*`` variables)."""
    get_settings.cache_clear()
    for callback in _listeners:
        callback()


@receiver(setting_changed)
def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("REPID", "BASE_DIR"):
        reset()
    elif setting == "TIME_ZONE":
        apply_time_zone()


def apply_time_zone() -> None:
    """Read the cron of schedules without ``tz`` in the project's ``TIME_ZONE`` (``"UTC"``
    when it is ``None``); called by the app's ``ready()`` and when ``TIME_ZONE`` changes."""
    from .engine.schedules.spec import set_default_tz

    set_default_tz(getattr(_django_settings(), "TIME_ZONE", None) or "UTC")
