"""``python manage.py repid_embedded status|stop``: the project's embedded Redis.

With no ``BROKER_URL`` the first process that needs Redis starts an embedded redis-server on a
unix socket in ``.repid/`` and leaves it running for the others (docs/deployment.md). ``status``
says whether it runs and where; ``stop`` shuts it down (its data stays in ``.repid/``; the next
process that needs it starts it again). Neither ever starts it.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from repid_django import conf
from repid_django.engine.brokers.embedded import (
    embedded_running,
    socket_path,
    state_dir,
    stop_embedded_redis,
)
from repid_django.engine.brokers.redis.url import redact_url


class Command(BaseCommand):
    help = (
        "Show whether the project's embedded Redis runs (status) or shut it down (stop). "
        "Its data stays in .repid/; it is started again on demand."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("action", choices=("status", "stop"))

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            settings = conf.get_settings()
        except conf.SettingError as exc:
            raise CommandError(str(exc)) from None
        base = settings.embedded_dir
        sock = socket_path(base)
        running = embedded_running(base)
        used = (
            "this project uses it (no BROKER_URL)"
            if settings.broker_url is None
            else f"this project uses {redact_url(settings.broker_url)} instead"
        )
        if options["action"] == "status":
            state = "runs" if running else "is not running"
            self.stdout.write(
                f"the embedded Redis {state} (socket {sock}, data in {state_dir(base)}); {used}"
            )
            return
        if not running:
            self.stdout.write(f"the embedded Redis is not running (socket {sock})")
            return
        stop_embedded_redis(base)
        if embedded_running(base):
            raise CommandError(f"the embedded Redis on {sock} did not stop within 10 s")
        self.stdout.write(f"stopped the embedded Redis (socket {sock}); its data stays")
