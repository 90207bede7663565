"""System checks (``manage.py check``) of the ``repid_django`` app.

========================  ===========================================================
``repid_django.E001``     ``settings.REPID`` is not a dict, or has an unknown key
``repid_django.E002``     a ``REPID`` value (or ``REPID_<KEY>`` variable) is invalid
``repid_django.W005``     a ``REPID_*`` environment variable that is no setting but close to one
                          (``REPID_CONCURENCY``): it is ignored; the warning names the setting
``repid_django.E003``     ``channels`` or ``daphne`` is listed before ``repid_django`` in
                          ``INSTALLED_APPS``: their ``runworker`` command would shadow ours
``repid_django.W001``     (``--deploy``) the broker cannot be reached
``repid_django.W002``     (``--deploy``) Redis's ``maxmemory-policy`` is not ``noeviction``:
                          Redis may evict queued jobs under memory pressure
``repid_django.W003``     (``--deploy``) no ``BROKER_URL``: the embedded Redis is for
                          development, not production
``repid_django.W004``     (``--deploy``) Redis keeps nothing on disk (``appendonly no`` and
                          no ``save`` points): a restart of Redis loses every job
``repid_django.I001``     (``--deploy``) Redis refuses ``CONFIG GET`` (managed services often
                          rename it): W002 and W004 could not be checked
``repid_django.W010``     two different actors share one name
``repid_django.E010``     a ``REPID["SCHEDULES"]`` entry cannot run (bad cron, unknown time
                          zone, args that are not JSON, unknown key, ...): one error per
                          schedule, naming it and what to fix
``repid_django.E011``     a settings or code schedule names an actor that no installed app
                          declares
``repid_django.W011``     a settings schedule has the name of a code schedule (the settings
                          one is used)
========================  ===========================================================

The ``--deploy`` checks reach Redis over one connection with one pipelined round trip (``PING``
and three ``CONFIG GET``), each bounded by a short timeout: an unreachable or silent server costs
the check a few seconds at most, never a hang.
"""

from __future__ import annotations

import difflib
import os
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
def check_metrics_auth(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[Any]:
    from .metrics.auth import KEY, parse

    try:
        raw, from_env = conf.raw_settings()
        parse(raw[KEY], KEY in from_env)
    except conf.SettingError as exc:
        if exc.key != KEY:
            return []  # reported by check_settings
        return [checks.Error(f"{exc.source}: {exc.problem}.", hint=exc.fix, id="repid_django.E002")]
    return []


@checks.register()
def check_environment(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[Any]:
    """``REPID_<NAME>`` variables that set nothing but look like a setting (a typo)."""
    warnings: list[Any] = []
    for variable in sorted(os.environ):
        name = variable.removeprefix(conf.ENV_PREFIX)
        if name == variable or name in conf.DEFAULTS:
            continue
        upper = name.upper()  # REPID_concurrency is a typo too (variables are case-sensitive)
        close = [upper] if upper in conf.DEFAULTS else []
        close = close or difflib.get_close_matches(upper, conf.DEFAULTS, n=1, cutoff=0.8)
        if close:
            warnings.append(
                checks.Warning(
                    f"environment variable {variable} is not a setting and is ignored.",
                    hint=f"Did you mean {conf.ENV_PREFIX}{close[0]}?",
                    id="repid_django.W005",
                )
            )
    return warnings


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


@checks.register()
def check_schedules(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[Any]:
    """Every schedule of the settings and the code: can it run, and is its actor known?"""
    from .worker.discovery import registry
    from .worker.schedules import code_schedules, settings_schedules

    try:
        settings = conf.load()
    except conf.SettingError:
        return []  # reported by check_settings
    found, problems = settings_schedules(settings)
    messages: list[Any] = [
        checks.Error(
            f"REPID['SCHEDULES']: {exc}",
            hint="Fix this schedule: see docs/schedules.md for its keys and their values.",
            id="repid_django.E010",
        )
        for exc in problems
    ]
    code = code_schedules()
    code_names = {schedule.name for schedule in code}
    known = sorted(registry.actors())
    for schedule in [*found, *code]:
        if schedule.actor not in known:
            where = "REPID['SCHEDULES']" if schedule.source == "settings" else "@actor(schedule=)"
            messages.append(
                checks.Error(
                    f"{where}: schedule {schedule.name!r} runs actor {schedule.actor!r}, which "
                    "no installed app declares.",
                    hint=f"Use one of: {', '.join(known) or '(no actor found)'}; or declare "
                    f"{schedule.actor!r} in a tasks.py.",
                    id="repid_django.E011",
                )
            )
        if schedule.source == "settings" and schedule.name in code_names:
            messages.append(
                checks.Warning(
                    f"REPID['SCHEDULES']: schedule {schedule.name!r} has the name of a code "
                    "schedule (@actor(schedule=...)); the settings one is used.",
                    hint="Rename one of them to keep both.",
                    id="repid_django.W011",
                )
            )
    return messages


@checks.register(checks.Tags.compatibility, deploy=True)
def check_broker(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[Any]:
    """At ``check --deploy``: reach the broker, read its eviction policy and persistence."""
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


CONFIG_READ = ("maxmemory-policy", "appendonly", "save")
"""The settings ``probe_redis`` reads: eviction (W002) and persistence (W004)."""


def probe_redis(url: str, timeout: float = 3.0) -> list[Any]:
    """What ``check --deploy`` says about the Redis at ``url``.

    W001 when it cannot be reached (``timeout`` seconds to connect, and as many for the answer),
    W002 when it may evict keys, W004 when it keeps nothing on disk, I001 when it refuses
    ``CONFIG GET`` (then W002 and W004 stay unknown).
    """
    import redis
    from redis.exceptions import RedisClusterException

    from .engine.brokers.redis.clients import sync_client
    from .engine.brokers.redis.url import RedisOptions, redact_url

    options = RedisOptions(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        options.validate()
        client = sync_client(options, timeout)
    except RedisClusterException as exc:  # a Cluster client reads the slot map when made
        return [
            checks.Warning(
                f"cannot reach the broker at {redact_url(url)}: {redact_url(str(exc))}",
                hint="Check that the Cluster's nodes run and are reachable from here.",
                id="repid_django.W001",
            )
        ]
    except ValueError as exc:
        return [
            checks.Error(
                f"REPID['BROKER_URL'] {redact_url(url)!r} is not usable: {exc}",
                hint="Use redis://host:6379/0, rediss://host:6380/0, unix:///path/redis.sock, "
                "redis+cluster://h1:7000,h2:7001 or redis+sentinel://h1:26379,h2:26379/name/0.",
                id="repid_django.E002",
            )
        ]
    try:
        replies = _probe(client)
        if isinstance(replies[0], Exception):
            raise replies[0]  # e.g. NOAUTH: reached, but not usable
    except (redis.RedisError, OSError) as exc:
        why = str(exc).split(" : ", 1)[0]  # a Sentinel's "No master found": not its client's repr
        return [
            checks.Warning(
                f"cannot reach the broker at {redact_url(url)}: {type(exc).__name__}: "
                f"{redact_url(why)}",
                hint="Start Redis or fix REPID_BROKER_URL (host, port, password, TLS). "
                "runworker exits with code 69 and enqueuing fails until it is reachable.",
                id="repid_django.W001",
            )
        ]
    finally:
        client.close()
    config: dict[str, str] = {}
    refused: Exception | None = None
    for reply in replies[1:]:
        if isinstance(reply, Exception):
            refused = refused or reply
        else:
            config.update((_text(key), _text(value)) for key, value in dict(reply).items())
    return _config_messages(redact_url(url), config, refused)


def _probe(client: Any) -> list[Any]:
    """PING, then ``CONFIG GET`` of each of :data:`CONFIG_READ`: the replies, errors included.
    One pipelined round trip; a Cluster client (which refuses to pipeline them) asks one node
    after the other."""
    import redis
    from redis.cluster import RedisCluster

    if not isinstance(client, RedisCluster):
        pipe = client.pipeline(transaction=False)
        pipe.ping()
        for name in CONFIG_READ:
            pipe.config_get(name)
        return list(pipe.execute(raise_on_error=False))
    replies: list[Any] = [client.ping()]
    for name in CONFIG_READ:
        try:
            replies.append(client.config_get(name))
        except redis.RedisError as exc:
            replies.append(exc)
    return replies


def _config_messages(where: str, config: dict[str, str], refused: Exception | None) -> list[Any]:
    messages: list[Any] = []
    policy = config.get("maxmemory-policy")
    if policy is not None and policy != "noeviction":
        messages.append(
            checks.Warning(
                f"Redis at {where} has maxmemory-policy {policy!r}: under memory pressure it "
                "may evict queued jobs, leases and results.",
                hint="Set 'maxmemory-policy noeviction' in redis.conf (or "
                "CONFIG SET maxmemory-policy noeviction) and give Redis enough memory.",
                id="repid_django.W002",
            )
        )
    if config.get("appendonly") == "no" and config.get("save") == "":
        messages.append(
            checks.Warning(
                f"Redis at {where} keeps nothing on disk (appendonly no, no save points): "
                "when Redis restarts or crashes, every queued job, lease, dead letter and "
                "result is lost, including jobs whose enqueue() was acknowledged.",
                hint="Turn on the append-only file: 'appendonly yes' with 'appendfsync "
                "everysec' in redis.conf (a crash of the machine can lose about the last "
                "second of acknowledged writes) or 'appendfsync always' (nothing acknowledged "
                "is lost, at the cost of an fsync per write); on a running server: CONFIG SET "
                "appendonly yes, then CONFIG REWRITE.",
                id="repid_django.W004",
            )
        )
    if refused is not None:
        messages.append(
            checks.Info(
                f"Redis at {where} refused CONFIG GET ({type(refused).__name__}: {refused}): "
                "its eviction policy and persistence were not checked.",
                hint="Managed services often disable CONFIG: check in the service's settings "
                "that the eviction policy is noeviction and that persistence (AOF) is on.",
                id="repid_django.I001",
            )
        )
    return messages


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
