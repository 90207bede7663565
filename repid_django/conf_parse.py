"""Parsing and checking of each ``REPID`` value (see :mod:`repid_django.conf` for the keys):
every problem is a :class:`SettingError` naming the key, where it came from and the fix."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .engine.limits import Limits
from .engine.queue import validate_queue_name

ENV_PREFIX = "REPID_"


class SettingError(ImproperlyConfigured):
    """A bad ``REPID`` value; ``key`` names it and ``source`` says where it came from."""

    def __init__(self, key: str, source: str, problem: str, fix: str) -> None:
        self.key = key
        self.source = source
        self.problem = problem
        self.fix = fix
        super().__init__(f"{source}: {problem}. {fix}")


def where(key: str, from_env: bool) -> str:
    return f"environment variable {ENV_PREFIX}{key}" if from_env else f"REPID[{key!r}]"


def number(
    key: str, value: Any, from_env: bool, *, integer: bool, minimum: float, allow_zero: bool
) -> float:
    source = where(key, from_env)
    kind = "a whole number" if integer else "a number of seconds"
    if isinstance(value, timedelta) and not integer:
        value = value.total_seconds()
    if isinstance(value, str) and from_env:
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            raise SettingError(key, source, f"{value!r} is not {kind}", f"Set {kind}.") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingError(key, source, f"{value!r} is not {kind}", f"Set {kind}.")
    if integer and not isinstance(value, int):
        raise SettingError(key, source, f"{value!r} is not {kind}", f"Set {kind}.")
    if value < minimum or (value == 0 and not allow_zero):
        bound = f">= {minimum:g}" if allow_zero or minimum > 0 else "> 0"
        raise SettingError(key, source, f"{value!r} is out of range", f"Set a value {bound}.")
    return float(value)


def broker_url(value: Any, from_env: bool) -> str | None:
    if value is None:
        return None
    source = where("BROKER_URL", from_env)
    fix = (
        "Use redis://[user:password@]host:6379/0, rediss://... (TLS), unix:///path/redis.sock, "
        "redis+cluster://host:port,host:port (Cluster), "
        "redis+sentinel://host:port,host:port/service/0 (Sentinel), or None for the embedded Redis."
    )
    if not isinstance(value, str) or "://" not in value:
        shown = "a URL without a scheme" if isinstance(value, str) else repr(value)
        raise SettingError("BROKER_URL", source, f"{shown} is not a Redis URL", fix)
    from .engine.brokers.redis.topology import SCHEMES
    from .engine.brokers.redis.url import RedisOptions

    scheme = value.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise SettingError("BROKER_URL", source, f"the scheme {scheme!r} is not supported", fix)
    try:
        RedisOptions(value).validate()
    except ValueError as exc:
        raise SettingError("BROKER_URL", source, str(exc), fix) from None
    return value


def queues(value: Any, from_env: bool) -> tuple[str, ...] | None:
    if value is None:
        return None
    from .engine.queue import validate_queue_name

    source = where("QUEUES", from_env)
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise SettingError(
            "QUEUES", source, f"{value!r} is not a list of queue names", 'Use ["default", ...].'
        )
    try:
        return tuple(validate_queue_name(name) for name in value)
    except ValueError as exc:
        raise SettingError("QUEUES", source, str(exc), "Fix the queue name.") from None


def prefix(value: Any, from_env: bool) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in " {}\n\t"):
        raise SettingError(
            "PREFIX",
            where("PREFIX", from_env),
            f"{value!r} is not a valid key prefix",
            "Use a short non-empty string without spaces or braces, e.g. 'repid'.",
        )
    return value


def mirror(value: Any, from_env: bool) -> bool:
    if not isinstance(value, bool):
        raise SettingError(
            "MIRROR", where("MIRROR", from_env), f"{value!r} is not a bool", "Use True or False."
        )
    return value


def schedules(value: Any, from_env: bool) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SettingError(
            "SCHEDULES",
            where("SCHEDULES", from_env),
            f"{value!r} is not a dict",
            'Use {"nightly-report": {"actor": "report", "cron": "0 3 * * *"}, ...}.',
        )
    return dict(value)


def queue_limits(value: Any, from_env: bool) -> Mapping[str, Limits]:
    source = where("QUEUE_LIMITS", from_env)
    example = 'Use {"emails": {"concurrency": 5, "rate": "100/m"}}.'
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SettingError("QUEUE_LIMITS", source, f"{value!r} is not a dict", example)
    found: dict[str, Limits] = {}
    for queue, limits in value.items():
        entry = f"{source}[{queue!r}]"
        if not isinstance(limits, Mapping) or set(limits) - {"concurrency", "rate"}:
            raise SettingError("QUEUE_LIMITS", entry, f"{limits!r} is not a limits dict", example)
        try:
            found[validate_queue_name(queue)] = Limits(
                limits.get("concurrency"), limits.get("rate")
            )
        except ValueError as exc:
            raise SettingError("QUEUE_LIMITS", entry, str(exc), example) from None
    return found
