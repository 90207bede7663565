"""The job metrics of a process, in ``prometheus_client``'s default registry.

Counters and histograms count what happens in this process (jobs it enqueued, jobs its worker
ran). Under ``PROMETHEUS_MULTIPROC_DIR`` (several web processes behind one scrape target) they
live in that folder's files and :mod:`.exposition` adds up every process's. Names follow
Prometheus's conventions (``_total`` counters, ``_seconds`` histograms); the table of them is in
docs/observability.md.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOB_LABELS = ("actor", "queue")

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
"""Seconds: 5 ms to 30 min, for run times and waiting times alike."""

ENQUEUED = Counter("repid_jobs_enqueued", "Jobs written to the broker by this process.", JOB_LABELS)
STARTED = Counter("repid_jobs_started", "Runs started by this worker.", JOB_LABELS)
SUCCEEDED = Counter("repid_jobs_succeeded", "Runs that succeeded.", JOB_LABELS)
FAILED = Counter(
    "repid_jobs_failed",
    "Runs that raised or timed out (retried or dead-lettered).",
    JOB_LABELS,
)
RETRIED = Counter("repid_jobs_retried", "Failed runs with a retry scheduled.", JOB_LABELS)
DEAD = Counter(
    "repid_jobs_dead",
    "Jobs this worker dead-lettered, by reason (failed, timeout, unknown_actor, ...; "
    "cancelled jobs are counted apart).",
    (*JOB_LABELS, "reason"),
)
CANCELLED = Counter("repid_jobs_cancelled", "Jobs cancelled while they ran.", JOB_LABELS)
LEASE_LOST = Counter(
    "repid_jobs_lease_lost",
    "Runs whose outcome the broker refused: the worker had lost the job's lease.",
    JOB_LABELS,
)
RUN_SECONDS = Histogram(
    "repid_job_run_seconds",
    "Run time of finished runs (succeeded or failed).",
    JOB_LABELS,
    buckets=BUCKETS,
)
WAIT_SECONDS = Histogram(
    "repid_job_wait_seconds",
    "Seconds from when a run was due (enqueued, deferred until, or retry time) to its start.",
    JOB_LABELS,
    buckets=BUCKETS,
)
HEARTBEAT = Gauge(
    "repid_worker_heartbeat_timestamp_seconds",
    "Unix time of this worker's last heartbeat (sent from its event loop: a blocked loop "
    "stops it).",
    multiprocess_mode="max",
)
