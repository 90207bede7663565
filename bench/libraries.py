"""The libraries the benchmark knows, and the honest small print of each."""

from __future__ import annotations

from dataclasses import dataclass

OURS = "repid_django"


@dataclass(frozen=True)
class Library:
    name: str
    dist: str  # distribution whose version is printed
    ack: str  # when a delivery is acknowledged
    results: str  # what is stored after a job
    concurrency: str  # the worker as run here
    bulk: bool  # has a bulk enqueue API (measured as "enqueue-bulk")
    sync: bool = False  # has a plain synchronous enqueue (measured as "enqueue-sync")
    scale: float = 1.0  # share of --jobs/--latency for the slowest workers (keeps runs short)


LIBRARIES = [
    Library(
        OURS,
        "repid-django",
        "lease, ack after run",
        "kept 1 h, none for None (default)",
        "Worker default",
        bulk=True,
        sync=True,
    ),
    Library(
        "repid",
        "repid",
        "ack after run (streams)",
        "none (no result store)",
        "tasks_limit 1000, batch 10",
        bulk=False,
    ),
    Library(
        "arq",
        "arq",
        "ack after run",
        "kept 1 h (default)",
        "max_jobs 10, poll 0.5 s",
        bulk=False,
        scale=0.2,
    ),
    Library(
        "rq",
        "rq",
        "ack after run (fork per job)",
        "kept 500 s (default)",
        "1 work-horse (fork per job)",
        bulk=True,
        sync=True,
        scale=0.2,
    ),
    Library(
        "dramatiq",
        "dramatiq",
        "ack after run",
        "none (no backend)",
        "8 threads",
        bulk=False,
        sync=True,
    ),
    Library(
        "celery",
        "celery",
        "ack before run (default)",
        "none (no backend)",
        "prefork, 2 children",
        bulk=False,
        sync=True,
    ),
    Library(
        "huey",
        "huey",
        "ack before run (BRPOP)",
        "none (None return)",
        "1 thread",
        bulk=False,
        sync=True,
    ),
    Library("saq", "saq", "ack after run", "kept 600 s (default)", "concurrency 10", bulk=False),
    Library(
        "taskiq",
        "taskiq",
        "ack when saved (streams)",
        "none (no backend)",
        "max_async_tasks 100",
        bulk=False,
    ),
    Library(
        "streaq",
        "streaq",
        "ack after run (streams)",
        "kept 5 min (default)",
        "concurrency 16",
        bulk=True,
    ),
]

BY_NAME = {lib.name: lib for lib in LIBRARIES}
