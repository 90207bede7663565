"""``python manage.py repid_health``: a liveness probe for a worker host (see ``--help``).

Exit 0 when Redis answers a ``PING`` and the newest worker heartbeat of this host (or of the
worker named with ``--worker``) is recent; else exit 1 with a one-line reason on stderr. The
heartbeats are the workers' rows of the ORM mirror (``WorkerRecord``, written every 5 s from
the worker's event loop, so a worker whose loop is blocked goes stale). ``--redis-only`` checks
Redis alone (a web server's readiness). No system checks run: a probe should cost little.
"""

from __future__ import annotations

import socket
import sys
from argparse import ArgumentParser
from typing import Any, NoReturn

from django.core.management.base import BaseCommand
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone

from repid_django import conf
from repid_django.engine.brokers.embedded import embedded_url
from repid_django.engine.brokers.redis.clients import sync_client
from repid_django.engine.brokers.redis.url import RedisOptions, redact_url

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1


class Command(BaseCommand):
    help = (
        "Exit 0 when Redis answers and this host's worker sent a recent heartbeat (within "
        "--max-age seconds), else 1 with the reason on one line: for liveness probes."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--worker",
            metavar="ID",
            help="Check this worker (its id as the admin shows it, or its start 'host:pid') "
            "instead of the newest one of this host.",
        )
        parser.add_argument(
            "--host", help="Check the workers of this host (default: this machine's name)."
        )
        parser.add_argument(
            "--max-age",
            type=float,
            help="Seconds a heartbeat stays fresh (default: REPID['LEASE_TTL'], 30 at least; "
            "workers send one every 5 s).",
        )
        parser.add_argument(
            "--timeout", type=float, default=3.0, help="Seconds to wait for Redis (default 3)."
        )
        parser.add_argument(
            "--redis-only", action="store_true", help="Check only that Redis answers."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            settings = conf.get_settings()
        except conf.SettingError as exc:
            self._unhealthy(f"bad settings: {exc}")
        where, problem = redis_problem(settings, options["timeout"])
        if problem:
            self._unhealthy(problem)
        if options["redis_only"]:
            self.stdout.write(f"healthy: Redis answers at {where}")
            return
        max_age = options["max_age"]
        if max_age is None:
            max_age = max(30.0, settings.lease_ttl)
        host = options["host"] or socket.gethostname()
        ok, text = worker_state(options["worker"], host, max_age, mirror=settings.mirror)
        if not ok:
            self._unhealthy(text)
        self.stdout.write(f"healthy: {text}; Redis answers at {where}")

    def _unhealthy(self, reason: str) -> NoReturn:
        self.stderr.write(f"unhealthy: {reason}")
        sys.exit(EXIT_UNHEALTHY)


def redis_problem(settings: conf.RepidSettings, timeout: float) -> tuple[str, str | None]:
    """Where Redis is (password redacted) and why it does not answer (``None``: it does).
    The embedded Redis is pinged on its socket, never started."""
    import redis
    from redis.exceptions import RedisClusterException

    url = settings.broker_url or embedded_url(settings.embedded_dir)
    where = redact_url(url)
    options = RedisOptions(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        options.validate()
        client = sync_client(options, timeout)
    except ValueError as exc:
        return where, f"Redis URL {where} is not usable: {exc}"
    except RedisClusterException as exc:  # a Cluster client reads the slot map when made
        return where, f"Redis unreachable at {where} ({redact_url(str(exc))})"
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return where, f"Redis unreachable at {where} ({type(exc).__name__}: {redact_url(str(exc))})"
    finally:
        client.close()
    return where, None


def worker_state(
    worker: str | None, host: str, max_age: float, *, mirror: bool
) -> tuple[bool, str]:
    """Whether the newest heartbeat of ``worker`` (or of ``host``'s workers) is fresh, and
    what to say about it."""
    from repid_django.models import WorkerRecord

    records = WorkerRecord.objects.all()
    if worker:
        records = records.filter(Q(worker_id=worker) | Q(worker_id__startswith=f"{worker}:"))
        whose = f"worker {worker}"
    else:
        records = records.filter(host=host)
        whose = f"this host ({host})"
    try:
        record = records.order_by("-last_heartbeat").first()
    except DatabaseError as exc:
        return (
            False,
            f"cannot read the worker heartbeats ({type(exc).__name__}: {exc}); run migrate?",
        )
    if record is None:
        off = " (the ORM mirror, which records heartbeats, is off)" if not mirror else ""
        return False, f"no worker heartbeat from {whose}{off}"
    age = (timezone.now() - record.last_heartbeat).total_seconds()
    if record.state == "stopped":
        return False, f"worker {record.worker_id} stopped {age:.0f} s ago"
    if age > max_age:
        return False, (
            f"heartbeat stale for {age:.0f} s (worker {record.worker_id}, max age {max_age:g} s)"
        )
    return True, f"worker {record.worker_id} sent a heartbeat {age:.1f} s ago"
