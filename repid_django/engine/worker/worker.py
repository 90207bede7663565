"""Workers: routers that receive messages and run their actors.

``runner = await Worker(routers=[router]).run()`` consumes the queues of the worker's actors
until a signal (``SIGINT``/``SIGTERM``), ``Worker.stop()`` or ``messages_limit`` ends it, then
shuts down gracefully and returns the run's counters (``runner.processed`` ...).
"""

from __future__ import annotations

import math
import os
import signal
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence

from ..connection import Connection, get_connection
from ..limits import Limits
from ..queue import validate_queue_name
from ..router import Router
from ..schedules.scheduler import ScheduleSource
from ..schedules.spec import Schedule
from .events import WorkerListener
from .runner import _Runner
from .signals import DEFAULT_SIGNALS


class Worker(Router):
    """Receives messages for its actors and runs them.

    * ``routers``: routers whose actors this worker runs (it can also have its own, being a
      :class:`Router`; a later actor of the same name replaces an earlier one).
    * ``graceful_shutdown_time``: seconds that running actors get to finish after a signal or
      the messages limit; then they are cancelled and their jobs go back to the queue without
      spending a retry.
    * ``messages_limit``: stop after receiving this many messages.
    * ``handle_signals``: signals that start the graceful shutdown (a second one forces it).
    * ``auto_declare``: declare the worker's queues when it starts.
    * ``concurrency``: actor runs at the same time (async actors on the event loop; sync ones
      in a shared thread pool, or a process pool with ``run_in_process=True``).
    * ``queues``: queues to consume (default: the queues of the worker's actors).
    * ``listeners``: :class:`WorkerListener` objects that get job events and heartbeats.
    * ``prefetch``: messages held ready beyond ``concurrency`` (returned at once on shutdown).
    * ``burst``: stop as soon as nothing is ready to run (scripts and tests).
    * ``connection``: default: the current connection (``app.magic()`` or the process default).
    * ``schedules``: periodic schedules to fire besides the actors' own (``@actor(schedule=)``):
      :class:`~..schedules.Schedule` objects, or an async callable returning the current ones
      (read again every two seconds: edits take effect without a restart). Every worker fires
      them; each tick is enqueued once in all (see :mod:`..schedules.scheduler`).
    * ``queue_limits``: ``{queue: Limits(concurrency=..., rate=...)}`` set on the broker when
      the worker starts (actors' own limits are set from their decorators); see
      :mod:`..limits`.
    """

    def __init__(  # noqa: PLR0917 - the seeds' positional order
        self,
        routers: Iterable[Router] | None = None,
        graceful_shutdown_time: float = 25.0,
        messages_limit: float = math.inf,
        handle_signals: Sequence[signal.Signals] = DEFAULT_SIGNALS,
        auto_declare: bool = True,
        concurrency: int = 100,
        *,
        queues: Iterable[str] | None = None,
        listeners: Iterable[WorkerListener] = (),
        prefetch: int | None = None,
        burst: bool = False,
        connection: Connection | None = None,
        claim_wait: float = 1.0,
        claim_batch: int = 100,
        finish_window: float = 0.002,
        finish_batch: int = 100,
        heartbeat_interval: float = 5.0,
        thread_pool_size: int | None = None,
        process_pool_size: int | None = None,
        unknown_actor_delay: float = 1.0,
        unknown_actor_max: int = 5,
        name: str | None = None,
        schedules: Iterable[Schedule] | ScheduleSource | None = None,
        queue_limits: Mapping[str, Limits] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if graceful_shutdown_time < 0:
            raise ValueError(f"graceful_shutdown_time must be >= 0, got {graceful_shutdown_time!r}")
        if not messages_limit > 0:
            raise ValueError(f"messages_limit must be > 0 (or math.inf), got {messages_limit!r}")
        if prefetch is not None and prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch!r}")
        if claim_wait < 0 or claim_batch < 1 or finish_batch < 1 or finish_window < 0:
            raise ValueError("claim_wait and finish_window must be >= 0; batches must be >= 1")
        for router in routers or ():
            self.include_router(router)
        self.graceful_shutdown_time = float(graceful_shutdown_time)
        self.messages_limit = messages_limit
        self.handle_signals = list(handle_signals)
        self.auto_declare = auto_declare
        self.concurrency = concurrency
        self.listeners = tuple(listeners)
        self.prefetch = prefetch
        self.burst = burst
        self.claim_wait = claim_wait
        self.claim_batch = claim_batch
        self.finish_window = finish_window
        self.finish_batch = finish_batch
        self.heartbeat_interval = heartbeat_interval
        self.thread_pool_size = thread_pool_size
        self.process_pool_size = process_pool_size
        self.unknown_actor_delay = unknown_actor_delay
        self.unknown_actor_max = unknown_actor_max
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._queues = None if queues is None else [validate_queue_name(q) for q in queues]
        self.queue_limits: dict[str, Limits] = {
            validate_queue_name(q): limits for q, limits in (queue_limits or {}).items()
        }
        self.schedule_source: ScheduleSource | None = None
        self._extra_schedules: list[Schedule] = []
        if callable(schedules):
            self.schedule_source = schedules
        elif schedules is not None:
            self._extra_schedules = list(schedules)
            for item in self._extra_schedules:
                if not isinstance(item, Schedule):
                    raise TypeError(f"schedules must be Schedule objects, got {item!r}")
        self._connection = connection
        self._runner: _Runner | None = None

    def __repr__(self) -> str:
        return f"Worker(id={self.id!r}, actors={sorted(self.actors)!r})"

    @property
    def queues(self) -> list[str]:
        """The queues this worker consumes: ``queues=`` if given, else its actors' queues."""
        if self._queues is not None:
            return list(self._queues)
        return super().queues

    @property
    def schedules(self) -> list[Schedule]:
        """The fixed schedules this worker fires: its actors' and ``schedules=``."""
        return [*super().schedules, *self._extra_schedules]

    @property
    def runner(self) -> _Runner | None:
        """The run in progress (its live counters), or ``None``."""
        return self._runner

    async def run(self) -> _Runner:
        """Consume until a signal, :meth:`stop` or the messages limit; returns the run."""
        if self._runner is not None:
            raise RuntimeError(f"worker {self.id} is already running")
        connection = self._connection or get_connection()
        await connection.connect()
        runner = _Runner(self, connection)
        self._runner = runner
        try:
            await runner.run()
        finally:
            self._runner = None
        return runner

    def stop(self, force: bool = False) -> None:
        """Start the graceful shutdown of the running worker (``force``: cancel actors now).

        Call it from the worker's event loop; from another thread use
        ``loop.call_soon_threadsafe(worker.stop)``.
        """
        if self._runner is not None:
            self._runner.stop(force=force)
