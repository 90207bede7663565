"""A stream of jobs through a Cluster or Sentinel set while a test breaks it, and its ledger.

A producer thread enqueues ``record`` jobs one at a time (as a web request does) and notes
which enqueues were acknowledged and which raised; two worker processes
(``redis_worker.py``) run them and write the run log to the suite's standalone server, which
the test does not touch. So what a failover lost is measured outside the topology that lost
it: an acknowledged job that never ran was lost; a job that ran twice was repeated.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field

import redis

from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.job import Job


@dataclass
class Ledger:
    """What the producer did, and when."""

    acked: list[str] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Producer:
    """Enqueues ``record`` jobs into ``url`` from a thread, about ``rate`` a second."""

    def __init__(self, url: str, prefix: str, *, rate: float = 300, wait_replicas: int = 0) -> None:
        self.broker = RedisMessageBroker(
            url, prefix=prefix, enqueue_timeout=10.0, wait_replicas=wait_replicas
        )
        self.ledger = Ledger()
        self._pause = 1 / rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="producer", daemon=True)
        self._count = 0

    def __enter__(self) -> Producer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.broker.enqueue_sync([])  # nothing: the sync client stays usable for the test

    def _run(self) -> None:
        while not self._stop.is_set():
            job_id = f"job-{self._count}"
            message = Job("record", "e2e", args={"n": self._count}, id_=job_id).to_message()
            self._count += 1
            try:
                self.broker.enqueue_sync([message])
            except ConnectionError as exc:
                self.ledger.failed.append(job_id)
                self.ledger.errors.append(str(exc)[:200])
            else:
                self.ledger.acked.append(job_id)
                self.ledger.acked_at.append(time.monotonic())
            time.sleep(self._pause)


class RunLog:
    """The workers' run log on the standalone server (see ``redis_worker.py --log-url``)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client, self.key = client, f"{prefix}:{{e2e}}:log"

    def ends(self) -> list[dict[str, object]]:
        """The records of the runs that ended well, in order."""
        records = (json.loads(raw) for raw in self.client.lrange(self.key, 0, -1))
        return [r for r in records if r["e"] == "end" and r["ok"]]

    def ended(self) -> dict[str, int]:
        """Job id -> how many of its runs ended well."""
        counts: dict[str, int] = {}
        for record in self.ends():
            job = str(record["job"])
            counts[job] = counts.get(job, 0) + 1
        return counts


@dataclass
class Tally:
    acked: int
    failed: int
    lost: list[str]
    repeated: int
    stall: float
    """The longest time between two acknowledged enqueues (seconds): the producer's outage."""
    idle: float
    """The longest time between two jobs done (seconds): the workers' outage."""

    def __str__(self) -> str:
        return (
            f"longest gap between two jobs done {self.idle:.2f}s; "
            f"{self.acked} enqueues acknowledged (longest gap {self.stall:.2f}s), "
            f"{self.failed} refused with an error, {len(self.lost)} acknowledged but never "
            f"run, {self.repeated} run twice"
        )


def settle(log: RunLog, ledger: Ledger, within: float) -> Tally:
    """Wait (at most ``within`` seconds) until every acknowledged job has run; the tally."""
    deadline = time.monotonic() + within
    while True:
        ended = log.ended()
        missing = [job for job in ledger.acked if job not in ended]
        if not missing or time.monotonic() > deadline:
            repeated = sum(1 for count in ended.values() if count > 1)
            done = sorted(float(str(r["t"])) for r in log.ends())
            return Tally(
                len(ledger.acked),
                len(ledger.failed),
                missing,
                repeated,
                longest_gap(ledger.acked_at),
                longest_gap(done),
            )
        time.sleep(0.1)


def longest_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)
