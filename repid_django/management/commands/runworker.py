"""``python manage.py runworker``: run the project's actors (see ``--help``)."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import sys
import threading
from argparse import ArgumentParser, BooleanOptionalAction
from typing import Any

from django.conf import settings as django_settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.utils import autoreload

from repid_django import conf
from repid_django.engine.brokers.embedded import EmbeddedRedisError
from repid_django.engine.connection import Repid
from repid_django.engine.queue import validate_queue_name
from repid_django.engine.schedules.scheduler import ScheduleSource
from repid_django.engine.schedules.spec import Schedule, ScheduleError
from repid_django.engine.worker.loops import LOOPS, loop_factory
from repid_django.engine.worker.signals import DEFAULT_SIGNALS
from repid_django.engine.worker.signals import install as install_signals
from repid_django.engine.worker.worker import Worker
from repid_django.metrics.server import serve_worker_metrics

from ._switch import switch_queues

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BROKER_UNREACHABLE = 69
"""``EX_UNAVAILABLE`` of sysexits.h (3 would mean "restart" to Django's autoreloader)."""

WORKER_ONLY = ("queues", "concurrency", "messages_limit", "burst", "graceful_shutdown_time")
"""Options that only mean something to a worker (refused with --pause/--resume)."""

LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}

logger = logging.getLogger("repid_django")


class Command(BaseCommand):
    help = (
        "Run a Repid worker for the actors of every installed app's tasks.py. "
        "The first SIGINT/SIGTERM stops fetching and lets running jobs finish within "
        "--graceful-shutdown-time (unfinished ones go back to the queue); a second one stops "
        "at once. Exit codes: 0 done (signal, --burst or --messages-limit), 1 bad "
        "configuration or forced stop, 69 broker unreachable. Every runworker also fires the "
        "periodic schedules (no beat process: each tick is enqueued once in all). "
        "With --pause or --resume it pauses or resumes queues and exits, starting no worker."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--queues",
            help="Comma-separated queues to consume (default: REPID['QUEUES'], else every "
            "queue the actors listen on).",
        )
        parser.add_argument("--concurrency", type=int, help="Jobs run at once.")
        parser.add_argument(
            "--messages-limit", type=int, help="Stop after receiving this many messages."
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Exit when nothing is left to run (scripts, tests, cron).",
        )
        parser.add_argument(
            "--graceful-shutdown-time",
            type=float,
            help="Seconds running jobs get to finish after a signal.",
        )
        parser.add_argument(
            "--reload",
            action=BooleanOptionalAction,
            default=None,
            help="Restart when code changes (default: on under DEBUG, off with --burst).",
        )
        parser.add_argument(
            "--loop",
            choices=LOOPS,
            default="auto",
            help="Event loop: uvloop when installed (auto, the default), or asyncio's own.",
        )
        parser.add_argument(
            "--mirror",
            action=BooleanOptionalAction,
            default=None,
            help="Write jobs and workers to the ORM for the admin (default: REPID['MIRROR']).",
        )
        parser.add_argument(
            "--metrics-port",
            metavar="[HOST:]PORT",
            help="Serve this worker's Prometheus metrics over HTTP on PORT (all interfaces; "
            "HOST:PORT to choose; 0: a free port, logged). One port per worker process.",
        )

        parser.add_argument(
            "--pause",
            action="append",
            metavar="QUEUE",
            default=[],
            help="Pause QUEUE (repeatable): workers start none of its jobs until it is resumed "
            "(running jobs finish; enqueue keeps accepting). Then exit; no worker is started.",
        )
        parser.add_argument(
            "--resume",
            action="append",
            metavar="QUEUE",
            default=[],
            help="Resume QUEUE (repeatable), then exit; no worker is started.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._configure_logging(options["verbosity"])
        try:
            conf.get_settings()
        except conf.SettingError as exc:
            raise CommandError(str(exc)) from None
        if options["pause"] or options["resume"]:
            self._switch(options)
            return
        queues = self._queues(options["queues"])
        for name in ("concurrency", "messages_limit"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        if options["graceful_shutdown_time"] is not None and options["graceful_shutdown_time"] < 0:
            raise CommandError("--graceful-shutdown-time must be >= 0")
        options["queues"] = queues
        reload = options["reload"]
        if reload is None:
            reload = bool(django_settings.DEBUG) and not options["burst"]
        self._worker: Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stops = 0
        self._reloading = False
        self._stopped = threading.Event()
        if reload:
            autoreload.autoreload_started.connect(self._on_reloader_started, weak=False)
            autoreload.file_changed.connect(self._on_file_changed, weak=False)
            autoreload.run_with_reloader(self._reload_main, options)
            return
        code = self._run(options, handle_signals=True)
        if self._stops > 1:
            # Forced: do not wait for sync actors still running in threads (they cannot be
            # cancelled; their jobs are already back in the queue).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        if code:
            sys.exit(code)

    # running ---------------------------------------------------------------------------------
    def _run(self, options: dict[str, Any], *, handle_signals: bool) -> int:
        try:
            factory = loop_factory(options.get("loop", "auto"))
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        worker = self._build(options)
        serve_worker_metrics(options.get("metrics_port"))
        try:
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(self._main(worker, handle_signals))
        except (ConnectionError, EmbeddedRedisError) as exc:
            self.stderr.write(f"runworker: the broker is unreachable: {exc}")
            return EXIT_BROKER_UNREACHABLE
        finally:
            connections.close_all()
        if self._stops > 1:
            self.stderr.write("runworker: forced stop; unfinished jobs were returned")
            return EXIT_ERROR
        return EXIT_OK

    def _build(self, options: dict[str, Any]) -> Worker:
        from repid_django.connection import build_connection
        from repid_django.mirror.listener import ensure_mirror_tables
        from repid_django.worker.build import build_worker

        mirror = conf.get_settings().mirror if options["mirror"] is None else options["mirror"]
        if mirror:
            ensure_mirror_tables()
        self._connection = build_connection()
        schedules = None if options["burst"] else self._schedules()
        worker = build_worker(
            connection=self._connection,
            queues=options["queues"],
            concurrency=options["concurrency"],
            messages_limit=options["messages_limit"] or math.inf,
            burst=options["burst"],
            graceful_shutdown_time=options["graceful_shutdown_time"],
            handle_signals=(),
            mirror=mirror,
            schedules=schedules,
        )
        if not worker.actors:
            raise CommandError(
                "no actors found: declare them in a tasks.py of an installed app, with "
                "'@router.actor' on a module-level Router or with "
                "'from repid_django.shortcuts import actor'"
            )
        if not worker.queues:
            raise CommandError("no queues to consume: pass --queues")
        self._worker = worker
        return worker

    def _schedules(self) -> ScheduleSource | list[Schedule]:
        """Every worker fires every schedule (no beat process; the broker enqueues each tick
        once). The code and settings schedules are written to the schedule table first; then
        the worker reads the table every two seconds, so admin edits apply without a restart."""
        from repid_django.worker import schedules

        try:
            declared = schedules.declared_schedules()
        except ScheduleError as exc:
            raise CommandError(f"REPID['SCHEDULES']: {exc}") from None
        if not schedules.table_exists():
            logger.warning(
                "the schedule table does not exist: run 'python manage.py migrate' to manage "
                "schedules in the admin; firing the code and settings schedules only"
            )
            return declared
        schedules.sync_schedules(declared)
        return schedules.database_source(fallback=declared)

    async def _main(self, worker: Worker, handle_signals: bool) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        remove = install_signals(loop, DEFAULT_SIGNALS, self._on_signal) if handle_signals else None
        # The worker's connection is the current one for its actors' follow-up enqueues:
        # async actors run in this context, sync ones in a copy of it (engine/worker/processor)
        # in the thread pool; run_in_process actors use their process's default connection.
        app = Repid(self._connection)
        try:
            async with app.magic(auto_disconnect=True):
                await worker.run()
        finally:
            if remove is not None:
                remove()
            self._loop = None
            self._stopped.set()

    def _on_signal(self, sig: signal.Signals | int) -> None:
        self._stops += 1
        name = signal.Signals(sig).name
        worker = self._worker
        if worker is None:
            return
        if self._stops == 1:
            self.stderr.write(f"runworker: {name}: finishing running jobs (again to force)")
            worker.stop()
        else:
            worker.stop(force=True)

    # autoreload ------------------------------------------------------------------------------
    def _reload_main(self, options: dict[str, Any]) -> None:
        try:
            code = self._run(options, handle_signals=False)
        except CommandError as exc:
            self.stderr.write(f"CommandError: {exc}")
            code = EXIT_ERROR
        if not self._reloading:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _on_reloader_started(self, **kwargs: Any) -> None:
        # In the reloader's main thread: route signals to the worker thread's loop.
        for sig in DEFAULT_SIGNALS:
            signal.signal(sig, lambda num, frame: self._threadsafe(self._on_signal, num))

    def _threadsafe(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)
        else:
            os._exit(EXIT_OK if self._stops <= 1 else EXIT_ERROR)

    def _on_file_changed(self, file_path: Any, **kwargs: Any) -> None:
        self.stderr.write(f"runworker: {file_path} changed; restarting after running jobs end")
        self._reloading = True
        worker, loop = self._worker, self._loop
        if worker is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(worker.stop)
            self._stopped.wait(worker.graceful_shutdown_time + 10)
        # returning None lets Django restart the process

    # --pause / --resume ----------------------------------------------------------------------
    def _switch(self, options: dict[str, Any]) -> None:
        """Pause and resume the named queues, then return (no worker is started)."""
        from repid_django.ops import BrokerUnavailable

        extra = [f"--{name.replace('_', '-')}" for name in WORKER_ONLY if options.get(name)]
        if extra:
            raise CommandError(
                f"--pause/--resume only switch queues and exit: drop {', '.join(extra)} (or run "
                "the worker with a separate runworker command)"
            )
        try:
            for line in switch_queues(options["pause"], options["resume"]):
                self.stdout.write(line)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except BrokerUnavailable as exc:
            self.stderr.write(f"runworker: {exc}")
            sys.exit(EXIT_BROKER_UNREACHABLE)

    # helpers ---------------------------------------------------------------------------------
    def _queues(self, raw: str | None) -> list[str] | None:
        if not raw:
            return None
        names = [name.strip() for name in raw.split(",") if name.strip()]
        try:
            return [validate_queue_name(name) for name in names]
        except ValueError as exc:
            raise CommandError(f"--queues: {exc}") from None

    def _configure_logging(self, verbosity: int) -> None:
        logger.setLevel(LEVELS.get(verbosity, logging.DEBUG))
        if not logger.hasHandlers():
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            logger.addHandler(handler)
        if verbosity >= 3:
            logging.getLogger("asyncio").setLevel(logging.DEBUG)
