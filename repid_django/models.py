"""ORM mirror of the engine's state, for the admin and for reporting; and the schedules.

Redis is the source of truth; these rows are written by workers in batches, off the processing
path, idempotently, and a row's state only moves forward (see :data:`STATUS_RANK`).
:class:`Schedule` rows are the other way round: the admin (and the sync of code and settings)
writes them, and every worker reads them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .engine.schedules.spec import Schedule as EngineSchedule
from .engine.schedules.spec import ScheduleError


class JobStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    RETRYING = "retrying", _("Retrying")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    DEAD = "dead", _("Dead-lettered")
    CANCELLED = "cancelled", _("Cancelled")


STATUS_RANK: dict[str, int] = {
    JobStatus.QUEUED: 0,
    JobStatus.RUNNING: 1,
    JobStatus.RETRYING: 2,
    JobStatus.SUCCEEDED: 3,
    JobStatus.FAILED: 3,
    JobStatus.DEAD: 3,
    JobStatus.CANCELLED: 3,
}
"""Within one attempt a row moves to a higher rank only; a later attempt may start over."""

FINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.DEAD, JobStatus.CANCELLED)


class DeadReasonChoice(models.TextChoices):
    FAILED = "failed", _("Failed")
    TIMEOUT = "timeout", _("Timed out")
    WORKER_LOST = "worker_lost", _("Worker lost")
    UNKNOWN_ACTOR = "unknown_actor", _("Unknown actor")
    DECODE_ERROR = "decode_error", _("Undecodable")
    TOO_LARGE = "too_large", _("Too large")
    EXPIRED = "expired", _("Expired")
    CANCELLED = "cancelled", _("Cancelled")


class QueueRecord(models.Model):
    """A queue and its latest depth snapshot."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    ready = models.PositiveIntegerField(_("ready"), default=0)
    delayed = models.PositiveIntegerField(_("delayed"), default=0)
    running = models.PositiveIntegerField(_("running"), default=0)
    dead = models.PositiveIntegerField(_("dead letters"), default=0)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    class Meta:
        verbose_name = _("queue")
        verbose_name_plural = _("queues")
        ordering = ("name",)
        permissions = (("manage_jobs", _("Can requeue, retry, cancel and purge jobs")),)

    def __str__(self) -> str:
        return self.name


class QueueSample(models.Model):
    """A queue's depth in one minute (the last report of the minute), for the monitor's chart
    of the last hour. Workers write it with their heartbeat and delete rows older than
    ``SAMPLES_KEPT``: the table stays small (queues x 120 rows)."""

    queue = models.CharField(_("queue"), max_length=100)
    minute = models.DateTimeField(_("minute"))
    ready = models.PositiveIntegerField(_("ready"), default=0)
    delayed = models.PositiveIntegerField(_("delayed"), default=0)
    running = models.PositiveIntegerField(_("running"), default=0)
    dead = models.PositiveIntegerField(_("dead letters"), default=0)

    class Meta:
        verbose_name = _("queue depth sample")
        verbose_name_plural = _("queue depth samples")
        constraints = (
            models.UniqueConstraint(fields=("queue", "minute"), name="repid_sample_queue_minute"),
        )
        indexes = (models.Index(fields=("minute",), name="repid_sample_minute"),)

    def __str__(self) -> str:
        return f"{self.queue} @ {self.minute:%H:%M}"


SAMPLES_KEPT = timedelta(hours=2)
"""How long queue depth samples are kept (the monitor charts the last hour)."""


class JobRecord(models.Model):
    """One job (message id) with its latest run and result."""

    job_id = models.CharField(_("job id"), max_length=200, unique=True)
    actor = models.CharField(_("actor"), max_length=200, db_index=True)
    queue = models.CharField(_("queue"), max_length=100)
    status = models.CharField(
        _("status"), max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED
    )
    priority = models.SmallIntegerField(_("priority"), default=0)
    args = models.JSONField(_("arguments"), null=True, blank=True)
    attempt = models.PositiveIntegerField(_("attempt"), default=0)
    max_retries = models.PositiveIntegerField(_("retries allowed"), default=0)
    result = models.JSONField(_("result"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True, default="")
    worker = models.CharField(_("worker"), max_length=200, blank=True, default="")
    enqueued_at = models.DateTimeField(_("enqueued"), null=True, blank=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    retry_at = models.DateTimeField(_("next retry"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    class Meta:
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        ordering = ("-updated_at",)
        indexes = (
            models.Index(fields=("status", "updated_at"), name="repid_job_status_upd"),
            models.Index(fields=("queue", "status"), name="repid_job_queue_status"),
            models.Index(fields=("updated_at",), name="repid_job_updated"),
            # throughput (the monitor's figure and its hour of history) filters on finished_at
            models.Index(fields=("finished_at", "status"), name="repid_job_finished"),
            # the admin's list filtered by queue or actor, newest first (no sort of millions)
            models.Index(fields=("queue", "updated_at"), name="repid_job_queue_upd"),
            models.Index(fields=("actor", "updated_at"), name="repid_job_actor_upd"),
            # the monitor's running jobs, latest started first (stale rows cannot pile up a sort)
            models.Index(fields=("status", "started_at"), name="repid_job_status_started"),
        )

    def __str__(self) -> str:
        return f"{self.actor} [{self.job_id}]"

    @property
    def attempts_made(self) -> int:
        """How many times the job was started (``attempt`` counts from 0): 0 while it waits
        for its first run, 1 after a first-try success, 3 after a third run."""
        if self.status == JobStatus.QUEUED and self.started_at is None:
            return self.attempt
        return self.attempt + 1

    @property
    def attempts_label(self) -> str:
        """``"1 of 1"``, ``"3 of 3"``: runs so far of the runs allowed (retries + 1), as the
        dead letter's *attempts* counts them."""
        return f"{self.attempts_made} of {self.max_retries + 1}"

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class DeadLetterRecord(models.Model):
    """A dead-lettered message, mirrored from the broker's dead-letter queue."""

    job_id = models.CharField(_("job id"), max_length=200)
    queue = models.CharField(_("queue"), max_length=100)
    actor = models.CharField(_("actor"), max_length=200, blank=True, default="")
    reason = models.CharField(_("reason"), max_length=16, choices=DeadReasonChoice.choices)
    error = models.TextField(_("error"), blank=True, default="")
    args = models.JSONField(_("arguments"), null=True, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    raw = models.TextField(_("raw body excerpt"), blank=True, default="")
    failed_at = models.DateTimeField(_("failed"), default=timezone.now)
    requeued_at = models.DateTimeField(_("requeued"), null=True, blank=True)
    purged_at = models.DateTimeField(_("purged"), null=True, blank=True)

    class Meta:
        verbose_name = _("dead letter")
        verbose_name_plural = _("dead letters")
        ordering = ("-failed_at",)
        constraints = (
            models.UniqueConstraint(fields=("queue", "job_id"), name="repid_dead_queue_job"),
        )
        indexes = (
            models.Index(fields=("queue", "failed_at"), name="repid_dead_queue_failed"),
            models.Index(fields=("reason", "failed_at"), name="repid_dead_reason_failed"),
            # the admin's list, newest first, and filtered by actor; the job id search (a
            # prefix: LIKE 'x%' needs the pattern operator class on PostgreSQL, which other
            # databases ignore)
            models.Index(fields=("failed_at",), name="repid_dead_failed"),
            models.Index(
                fields=("actor", "failed_at"),
                opclasses=("varchar_pattern_ops", "timestamptz_ops"),
                name="repid_dead_actor_failed",
            ),
            models.Index(
                fields=("job_id",), opclasses=("varchar_pattern_ops",), name="repid_dead_job_id"
            ),
            # the monitor's failures: letters still in the dead-letter queue, newest first,
            # without walking past the requeued and purged ones (most, once operators act)
            models.Index(
                fields=("-failed_at",),
                condition=models.Q(requeued_at=None, purged_at=None),
                name="repid_dead_waiting",
            ),
        )

    def __str__(self) -> str:
        return f"{self.actor or '?'} [{self.job_id}] ({self.reason})"


class WorkerRecord(models.Model):
    """A worker process and its latest heartbeat."""

    worker_id = models.CharField(_("worker id"), max_length=200, unique=True)
    host = models.CharField(_("host"), max_length=255)
    pid = models.PositiveIntegerField(_("pid"))
    queues = models.JSONField(_("queues"), default=list)
    concurrency = models.PositiveIntegerField(_("concurrency"), default=0)
    state = models.CharField(_("state"), max_length=16, default="running")
    processed = models.PositiveBigIntegerField(_("jobs done"), default=0)
    failed = models.PositiveBigIntegerField(_("jobs failed"), default=0)
    running = models.PositiveIntegerField(_("running now"), default=0)
    started_at = models.DateTimeField(_("started"))
    last_heartbeat = models.DateTimeField(_("last heartbeat"), db_index=True)

    class Meta:
        verbose_name = _("worker")
        verbose_name_plural = _("workers")
        ordering = ("-last_heartbeat",)

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"

    def is_alive(self, within: timedelta = timedelta(seconds=30)) -> bool:
        """True when the last heartbeat is more recent than ``within`` and it did not stop."""
        return self.state != "stopped" and timezone.now() - self.last_heartbeat < within


class ScheduleSource(models.TextChoices):
    ADMIN = "admin", _("Admin")
    CODE = "code", _("Code (@actor(schedule=...))")
    SETTINGS = "settings", _("Settings (REPID['SCHEDULES'])")


class MissedChoice(models.TextChoices):
    SKIP = "skip", _("Skip: run only a tick that is on time")
    ONCE = "once", _("Once: one run for all missed ticks")
    ALL = "all", _("All: one run per missed tick (at most 100)")


class Schedule(models.Model):
    """A periodic schedule that every worker reads (``runworker`` re-reads them every 2 s).

    Rows of ``source`` admin are edited in the admin; those of code (``@actor(schedule=...)``)
    and settings (``REPID["SCHEDULES"]``) are written by :func:`repid_django.worker.schedules.
    sync_schedules` and only their ``enabled`` is edited here. :meth:`to_schedule` gives the
    engine's :class:`~repid_django.engine.schedules.Schedule`.
    """

    name = models.CharField(_("name"), max_length=100, unique=True)
    actor = models.CharField(_("actor"), max_length=200)
    cron = models.CharField(
        _("cron"),
        max_length=100,
        blank=True,
        default="",
        help_text=_(
            "Five fields (minute hour day month weekday), or six with a leading seconds "
            "field. Leave empty to run at an interval instead."
        ),
    )
    every = models.FloatField(
        _("every (seconds)"),
        null=True,
        blank=True,
        help_text=_("Run every this many seconds (at least 1), aligned on the Unix epoch."),
    )
    tz = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        default="",
        help_text=_("IANA zone the cron is read in (empty: the project's TIME_ZONE)."),
    )
    args = models.JSONField(
        _("arguments"),
        null=True,
        blank=True,
        help_text=_(
            'JSON: a dict of keyword arguments ({"days": 7}) or a list of positional ones.'
        ),
    )
    queue = models.CharField(_("queue"), max_length=100, default="default")
    priority = models.SmallIntegerField(_("priority"), default=0)
    enabled = models.BooleanField(_("enabled"), default=True)
    missed = models.CharField(
        _("missed ticks"), max_length=8, choices=MissedChoice.choices, default=MissedChoice.ONCE
    )
    source = models.CharField(
        _("declared in"), max_length=16, choices=ScheduleSource.choices, default="admin"
    )
    created = models.DateTimeField(_("created"), auto_now_add=True)
    updated = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("schedule")
        verbose_name_plural = _("schedules")
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    @property
    def declared(self) -> bool:
        """Declared in code or settings: only ``enabled`` is edited in the admin."""
        return self.source != ScheduleSource.ADMIN

    def to_schedule(self) -> EngineSchedule:
        """The engine's schedule for this row (:class:`ScheduleError` when it cannot run)."""
        return EngineSchedule(
            name=self.name,
            actor=self.actor,
            cron=self.cron or None,
            every=self.every,
            tz=self.tz or None,
            args=self.args,
            queue=self.queue,
            priority=self.priority,
            enabled=self.enabled,
            missed=self.missed,  # type: ignore[arg-type]
            source=self.source,
        )

    def field_errors(self) -> dict[str, str]:
        """What is wrong, field by field (empty when :meth:`to_schedule` works)."""
        errors: dict[str, str] = {}
        probes: dict[str, dict[str, Any]] = {
            "name": {"name": self.name},
            "actor": {"actor": self.actor},
            "cron": {"cron": self.cron, "every": None} if self.cron else {},
            "every": {"every": self.every} if self.every is not None else {},
            "tz": {"tz": self.tz} if self.tz else {},
            "args": {"args": self.args},
            "queue": {"queue": self.queue},
            "priority": {"priority": self.priority},
            "missed": {"missed": self.missed},
        }
        for field, values in probes.items():
            try:
                EngineSchedule(**{**_PROBE, **values})
            except (ScheduleError, TypeError) as exc:
                errors[field] = _PROBE_PREFIX.sub("", str(exc))
        if not errors and bool(self.cron) == (self.every is not None):
            both = "give a cron expression or an interval in seconds, not both"
            errors["cron"] = both if self.cron else "give a cron expression or an interval"
        if not errors:
            try:
                self.to_schedule()
            except ScheduleError as exc:
                errors["__all__"] = str(exc)
        return errors


_PROBE: dict[str, Any] = {"name": "probe", "actor": "probe", "every": 60.0}
_PROBE_PREFIX = re.compile(r"^schedule 'probe': ")
