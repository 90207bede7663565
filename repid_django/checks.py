"""System checks (``manage.py check``) of the ``repid_django`` app.

========================  ===========================================================
``repid_django.E001``     ``settings.REPID`` is not a dict, or has an unknown key
``repid_django.E002``     a ``REPID`` value (or ``REPID_<KEY>`` variable) is invalid
``repid_django.E003``     ``channels`` or ``daphne`` is listed before ``repid_django`` in
                          ``INSTALLED_APPS``: their ``runworker`` command would shadow ours
``repid_django.W001``     (``--deploy``) the broker cannot be reached
``repid_django.W002``     (``--deploy``) Redis's ``maxmemory-policy`` is not ``noeviction``:
                          Redis may evict queued jobs under memory pressure
``repid_django.W003``     (``--deploy``) no ``BROKER_URL``: the embedded Redis is for
                          development, not production
``repid_django.W010``     two different actors share one name
========================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.core import checks

from . import conf

SHADOWING_APPS = ("channels", "daphne")


@checks.register()
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[Any]:
    try:
        conf.load()
    except conf.SettingError as exc:
        unknown = exc.problem.startswith("unknown key") or exc.key == "REPID"
        return [
            checks.Error(
                f"{exc.source}: {exc.problem}.",
                hint=exc.fix or None,
                id="repid_django.E001" if unknown else "repid_django.E002",
            )
        ]
    return []


@checks.register()
def check_app_order(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[Any]:
    names = [config.name for config in apps.get_app_configs()]
    if "repid_django" not in names:
        return []
    ours = names.index("repid_django")
    errors: list[Any] = []
    for other in SHADOWING_APPS:
        if other in names and names.index(other) < ours:
            errors.append(
                checks.Error(
                    f"'{other}' is listed before 'repid_django' in INSTALLED_APPS, so "
                    f"'manage.py runworker' runs {other}'s command instead of the Repid worker.",
                    hint=f"Move 'repid_django' above '{other}' in INSTALLED_APPS.",
                    id="repid_django.E003",
                )
            )
    return errors


@checks.register()
def check_duplicate_actors(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[Any]:
    from .worker.discovery import registry

    return [
        checks.Warning(
            f"{len(regs)} actors are named {name!r}: {', '.join(r.where for r in regs)}.",
            hint=f"Jobs named {name!r} run {regs[-1].where}; rename the others "
            "(@actor(name=...) or @router.actor(name=...)).",
            id="repid_django.W010",
        )
        for name, regs in registry.duplicates().items()
    ]


@checks.register(checks.Tags.compatibility, deploy=True)
def check_broker(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[Any]:
    """At ``check --deploy``: reach the broker and read its eviction policy."""
    try:
        settings = conf.load()
    except conf.SettingError:
        return []  # reported by check_settings
    if settings.broker_url is None:
        return [
            checks.Warning(
                "REPID['BROKER_URL'] is not set: jobs go to the embedded Redis of this machine.",
                hint="Point REPID_BROKER_URL (or REPID['BROKER_URL']) at a Redis server, e.g. "
                "redis://redis.internal:6379/0.",
                id="repid_django.W003",
            )
        ]
    return probe_redis(settings.broker_url)


def probe_redis(url: str, timeout: float = 3.0) -> list[Any]:
    """W001 when ``url`` cannot be reached, W002 when it may evict keys."""
    import redis

    from .engine.brokers.redis.url import RedisOptions, redact_url

    options = RedisOptions(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client = redis.Redis.from_url(url, **options.client_kwargs())
    except ValueError as exc:
        return [
            checks.Error(
                f"REPID['BROKER_URL'] {redact_url(url)!r} is not usable: {exc}",
                hint="Use redis://host:6379/0, rediss://host:6380/0 or unix:///path/redis.sock.",
                id="repid_django.E002",
            )
        ]
    try:
        client.ping()
        try:
            config = {
                _text(key): _text(value)
                for key, value in dict(client.config_get("maxmemory-policy")).items()
            }
            policy = config.get("maxmemory-policy")
        except redis.ResponseError:
            policy = None  # CONFIG is disabled (managed Redis): nothing to say
    except (redis.RedisError, OSError) as exc:
        return [
            checks.Warning(
                f"cannot reach the broker at {redact_url(url)}: {type(exc).__name__}: "
                f"{redact_url(str(exc))}",
                hint="Start Redis or fix REPID_BROKER_URL (host, port, password, TLS). "
                "runworker exits with code 69 and enqueuing fails until it is reachable.",
                id="repid_django.W001",
            )
        ]
    finally:
        client.close()
    if policy is not None and policy != "noeviction":
        return [
            checks.Warning(
                f"Redis at {redact_url(url)} has maxmemory-policy "
                f"{policy!r}: under memory pressure it may evict "
                "queued jobs, leases and results.",
                hint="Set 'maxmemory-policy noeviction' in redis.conf (or "
                "CONFIG SET maxmemory-policy noeviction) and give Redis enough memory.",
                id="repid_django.W002",
            )
        ]
    return []


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
