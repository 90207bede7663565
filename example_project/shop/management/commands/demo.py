"""``python manage.py demo``: set up and run the example site with a worker (``make demo``).

Migrates the database, creates a demo superuser, starts the embedded Redis (unless
``REPID_BROKER_URL`` points elsewhere), then runs ``manage.py runworker`` and the web server as
child processes until Ctrl-C, which stops both cleanly. ``--check`` starts everything, proves
that the site answers and that a job round-trips through the worker, then stops (for tests/CI).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from repid_django import Job, get_connection, ops
from repid_django.conf import get_settings
from repid_django.engine.brokers.embedded import (
    embedded_url,
    ensure_embedded_redis,
    stop_embedded_redis,
)
from repid_django.engine.brokers.redis.url import redact_url
from repid_django.models import JobRecord, JobStatus

DEMO_USER = "admin"
DEMO_PASSWORD = "admin"  # noqa: S105 - a documented demo-only account
OLD_RECURRING_ID = "sales-report-every-minute"
"""The id of the recurring job older demos enqueued (``deferred_by=60``)."""


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = (
        "Run the example site and a worker on the embedded Redis: migrate, create the demo "
        "superuser admin/admin, start 'runworker' and the web server; Ctrl-C stops both."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="Web server port (8000).")
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
        parser.add_argument(
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help="Never ask anything (kept for scripts; the demo asks nothing today).",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Start everything, check that the site answers and a job runs, then stop "
            "(exit 0 when it all works).",
        )
        parser.add_argument(
            "--timeout", type=float, default=60.0, help="Seconds --check waits (60)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        self._free_port(host, port)
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database ready (migrations applied).")
        self._superuser()
        started_redis = self._broker()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        children: dict[str, subprocess.Popen[bytes]] = {}
        for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, or a plain `kill`
            signal.signal(signum, _interrupt)
        try:
            children["worker"] = self._spawn(
                [sys.executable, manage, "runworker", "--no-reload", "-v", "1"], env
            )
            children["web server"] = self._spawn(
                [sys.executable, manage, "runserver", f"{host}:{port}", "--noreload"], env
            )
            self._drop_old_recurring()
            url = f"http://{host}:{port}/"
            self._wait_http(url, children, options["timeout"])
            self._banner(url)
            if options["check"]:
                self._check(children, options["timeout"])
                return
            self._watch(children)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping the worker and the web server ...")
        finally:
            self._stop(children)
            if started_redis:
                stop_embedded_redis(get_settings().embedded_dir)
                self.stdout.write("Embedded Redis stopped.")

    # -------------------------------------------------------------------- set-up steps

    def _free_port(self, host: str, port: int) -> None:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                raise CommandError(
                    f"port {port} on {host} is in use (another 'manage.py demo' or "
                    "runserver?). Stop it, or pick another port: make demo PORT=8001"
                ) from None

    def _superuser(self) -> None:
        users = get_user_model()
        if users.objects.filter(username=DEMO_USER).exists():
            self.stdout.write(f"Demo superuser '{DEMO_USER}' exists already (kept as is).")
            return
        users.objects.create_superuser(DEMO_USER, "admin@example.com", DEMO_PASSWORD)
        self.stdout.write(
            f"Created the demo superuser '{DEMO_USER}' with password '{DEMO_PASSWORD}'. "
            "For this local demo only: never create it on a server."
        )

    def _broker(self) -> bool:
        """Start the embedded Redis when no URL is set; ``True`` if this command started it."""
        current = get_settings()
        if current.broker_url is not None:
            self.stdout.write(f"Broker: {redact_url(current.broker_url)}")
            return False
        running = _answers(embedded_url(current.embedded_dir))
        url = ensure_embedded_redis(current.embedded_dir)
        self.stdout.write(f"Embedded Redis {'already running' if running else 'started'} at {url}.")
        return not running

    def _spawn(self, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        # Own process group: Ctrl-C reaches this command only, which then stops each child
        # in order (the worker drains its running jobs first).
        return subprocess.Popen(command, env=env, start_new_session=True)

    def _drop_old_recurring(self) -> None:
        """The sales report is a schedule now (``REPID["SCHEDULES"]``, fired by the worker);
        remove the self-repeating job that older versions of the demo left in the queue."""
        connection = get_connection()
        connection.call(
            lambda: connection.message_broker.cancel("default", OLD_RECURRING_ID), timeout=10
        )

    def _wait_http(
        self, url: str, children: dict[str, subprocess.Popen[bytes]], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._assert_running(children)
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url, timeout=2) as answer,  # noqa: S310 - a local URL
            ):
                if answer.status == 200:
                    return
            time.sleep(0.2)
        raise CommandError(f"the web server did not answer on {url} within {timeout:.0f}s")

    def _banner(self, url: str) -> None:
        line = "-" * 72
        self.stdout.write(
            self.style.SUCCESS(
                f"\n{line}\n"
                f"  The example shop is running:  {url}\n"
                f"  Admin console:                {url}admin/repid_django/\n"
                f"  Log in as '{DEMO_USER}' / '{DEMO_PASSWORD}' (demo only).\n"
                "  Place an order, then open 'Recent jobs' or the admin to see the jobs.\n"
                "  Press Ctrl-C to stop the worker and the web server.\n"
                f"{line}\n"
            )
        )

    # -------------------------------------------------------------------------- running

    def _check(self, children: dict[str, subprocess.Popen[bytes]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        job_id = Job("ping").enqueue().value
        self._wait_succeeded(job_id, children, deadline)
        self.stdout.write(
            self.style.SUCCESS(f"Check passed: job {job_id} ran and shows in the admin.")
        )
        from example_project.shop.tasks import process_images

        job_id = process_images.enqueue(count=3, seconds_each=0.05).value
        self._wait_succeeded(job_id, children, deadline)
        progress = ops.job_progress("media", [job_id]).get(job_id)
        if progress is None or progress.text != "3 of 3 images":
            raise CommandError(f"the process_images job {job_id} reported {progress!r}")
        self.stdout.write(self.style.SUCCESS(f"Check passed: job {job_id} reported its progress."))

    def _wait_succeeded(
        self, job_id: str, children: dict[str, subprocess.Popen[bytes]], deadline: float
    ) -> None:
        while time.monotonic() < deadline:
            self._assert_running(children)
            record = JobRecord.objects.filter(job_id=job_id).first()
            if record is not None and record.status == JobStatus.SUCCEEDED:
                return
            time.sleep(0.1)
        raise CommandError(f"job {job_id} did not succeed in time")

    def _assert_running(self, children: dict[str, subprocess.Popen[bytes]]) -> None:
        for name, child in children.items():
            code = child.poll()
            if code is not None:
                raise CommandError(f"the {name} stopped unexpectedly (exit code {code})")

    def _watch(self, children: dict[str, subprocess.Popen[bytes]]) -> None:
        while True:
            self._assert_running(children)
            time.sleep(0.5)

    def _stop(self, children: dict[str, subprocess.Popen[bytes]]) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan them
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for name, child in children.items():
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                self.stdout.write(f"The {name} did not stop in 30 s and was killed.")
        if children:
            self.stdout.write("Worker and web server stopped.")
