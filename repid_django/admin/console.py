"""The admin operations console: read-only records of the ORM mirror, plus operations that call
the engine (requeue, retry, cancel, purge) for users with ``repid_django.manage_jobs``.

Records are never added or edited here (Redis is the source of truth); the view permission is
enough to look. Operations are POST only with CSRF, see :mod:`repid_django.admin.views`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import ops
from ..depths import STATS_TIMEOUT
from ..models import DeadLetterRecord, JobRecord, JobStatus, WorkerRecord
from . import actions
from . import display as show
from .filters import (
    ActorFilter,
    AliveFilter,
    DeadLetterStateFilter,
    FailedFilter,
    QueueFilter,
    UpdatedFilter,
    alive_within,
)
from .paginator import EstimatedCountPaginator
from .views import can_manage, dead_letter_views, job_views

Operation = dict[str, str]

if TYPE_CHECKING:
    BaseAdmin = admin.ModelAdmin[Any]
else:
    BaseAdmin = admin.ModelAdmin


class ConsoleAdmin(BaseAdmin):
    """Read-only records; ``has_manage_permission`` gates the operations."""

    show_full_result_count = False
    list_per_page = 50

    class Media:
        css = {"all": ("repid_django/admin.css",)}

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return can_manage(request)

    def operations(self, request: HttpRequest, obj: Any) -> list[Operation]:
        """Buttons of the change page: ``label``, ``url`` and ``style``."""
        return []

    def _op_urls(self, prefix: str, views: dict[str, Any], arg: str) -> list[URLPattern]:
        meta = self.model._meta
        return [
            path(
                f"{prefix}/{kind}/" if arg == "name" else f"<int:pk>/{kind}/",
                self.admin_site.admin_view(view),
                name=f"{meta.app_label}_{meta.model_name}_{kind.replace('-', '_')}",
            )
            for kind, view in views.items()
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if obj is not None and can_manage(request):
            context["repid_operations"] = self.operations(request, obj)
        return super().change_view(request, object_id, form_url, context)


def _op(model_name: str, kind: str, pk: object, label: str, style: str = "") -> Operation:
    url = reverse(f"admin:repid_django_{model_name}_{kind}", args=(pk,))
    return {"label": label, "url": url, "style": style}


SEARCH_FIELDS = ("job_id__startswith", "actor__startswith")
"""Case-sensitive prefixes (``LIKE 'x%'``), which an index serves (``varchar_pattern_ops`` on
PostgreSQL); ``^`` (``istartswith``, ``UPPER(...) LIKE``) and ``=`` (``iexact``) would read
the whole table. Job ids are lower-case hex; actor names are as the code spells them.
Likewise a list sorts only by its time column (``sortable_by``), newest or oldest first, which
an index gives in order: a click on *enqueued* or *status* would sort millions of rows (the
filters narrow by those instead)."""
SEARCH_HELP = "Search by the beginning of a job id, or of an actor name (case matters)."

CANCELLABLE = (JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.RUNNING)
"""Statuses of the jobs a Cancel button is shown for (waiting ones are removed, running ones
stopped)."""


@admin.register(JobRecord)
class JobRecordAdmin(ConsoleAdmin):
    list_display = (
        "short_job_id",
        "actor",
        "queue",
        "status_badge",
        "attempts",
        "outcome",
        "enqueued_at",
        "took",
        "updated_at",
    )
    list_filter = ("status", QueueFilter, ActorFilter, UpdatedFilter)
    sortable_by = ("updated_at",)  # what an index gives in order (see SEARCH_FIELDS)
    paginator = EstimatedCountPaginator
    search_fields = SEARCH_FIELDS
    search_help_text = SEARCH_HELP
    actions = (actions.retry_selected, actions.cancel_selected)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "job_id",
                    "actor",
                    "queue",
                    "status_badge",
                    "progress",
                    "priority",
                    "attempts",
                )
            },
        ),
        ("Timing", {"fields": ("enqueued_at", "started_at", "finished_at", "retry_at", "took")}),
        ("Data", {"fields": ("args_json", "result_json", "error_pre", "dead_letter", "worker")}),
    )
    readonly_fields = (
        "status_badge",
        "progress",
        "attempts",
        "took",
        "args_json",
        "result_json",
        "error_pre",
        "dead_letter",
    )

    def get_urls(self) -> list[URLPattern]:
        return self._op_urls("", job_views(self), "pk") + super().get_urls()

    def operations(self, request: HttpRequest, obj: JobRecord) -> list[Operation]:
        found: list[Operation] = []
        if obj.status in ops.RETRYABLE:
            found.append(_op("jobrecord", "retry", obj.pk, "Retry this job"))
        if obj.status in CANCELLABLE:
            found.append(_op("jobrecord", "cancel", obj.pk, "Cancel this job", "danger"))
        return found

    @admin.display(description="progress")
    def progress(self, obj: JobRecord) -> SafeString | str:
        """What the actor last reported with ``set_progress``, read from the broker now."""
        if obj.status == JobStatus.QUEUED:
            return "-"
        try:
            found = ops.job_progress(obj.queue, [obj.job_id], timeout=STATS_TIMEOUT)
        except ops.BrokerUnavailable:
            return format_html('<span class="repid-muted">{}</span>', "unknown: no answer")
        report = found.get(obj.job_id)
        if report is None:
            return "-"
        return show.progress(report, running=obj.status == JobStatus.RUNNING)

    @admin.display(description="job id", ordering="job_id")
    def short_job_id(self, obj: JobRecord) -> str:
        return show.short_id(obj.job_id)

    @admin.display(description="result or error")
    def outcome(self, obj: JobRecord) -> str:
        if obj.error:
            return show.error_summary(obj.error, 80)
        if obj.result is None:
            return "-"
        text = json.dumps(obj.result, ensure_ascii=False, default=str)
        return text if len(text) <= 80 else text[:79] + "…"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: JobRecord) -> SafeString:
        return show.status_badge(obj.status, obj.get_status_display())

    @admin.display(description="attempts")
    def attempts(self, obj: JobRecord) -> str:
        return obj.attempts_label

    @admin.display(description="duration")
    def took(self, obj: JobRecord) -> str:
        return show.duration(obj.duration)

    @admin.display(description="arguments")
    def args_json(self, obj: JobRecord) -> SafeString:
        return show.pretty_json(obj.args)

    @admin.display(description="result")
    def result_json(self, obj: JobRecord) -> SafeString:
        return show.pretty_json(obj.result)

    @admin.display(description="error")
    def error_pre(self, obj: JobRecord) -> SafeString:
        return show.pre(obj.error)

    @admin.display(description="dead letter")
    def dead_letter(self, obj: JobRecord) -> SafeString | str:
        letter = DeadLetterRecord.objects.filter(queue=obj.queue, job_id=obj.job_id).first()
        return (
            "-" if letter is None else show.admin_link("deadletterrecord", letter.pk, str(letter))
        )


@admin.register(DeadLetterRecord)
class DeadLetterRecordAdmin(ConsoleAdmin):
    list_display = (
        "short_job_id",
        "actor",
        "queue",
        "reason",
        "error_line",
        "attempts",
        "failed_at",
        "state",
    )
    list_filter = (DeadLetterStateFilter, "reason", QueueFilter, ActorFilter, FailedFilter)
    sortable_by = ("failed_at",)
    paginator = EstimatedCountPaginator
    search_fields = SEARCH_FIELDS
    search_help_text = SEARCH_HELP
    actions = (actions.requeue_selected, actions.purge_selected)
    fields = (
        "job_id",
        "job",
        "actor",
        "queue",
        "reason",
        "attempts",
        "failed_at",
        "state",
        "error_pre",
        "args_json",
        "raw_pre",
    )
    readonly_fields = ("job", "state", "error_pre", "args_json", "raw_pre")

    def get_urls(self) -> list[URLPattern]:
        return self._op_urls("", dead_letter_views(self), "pk") + super().get_urls()

    def operations(self, request: HttpRequest, obj: DeadLetterRecord) -> list[Operation]:
        if obj.purged_at is not None:
            return []
        return [
            _op("deadletterrecord", "requeue", obj.pk, "Requeue this job"),
            _op("deadletterrecord", "purge", obj.pk, "Delete from the broker", "danger"),
        ]

    @admin.display(description="job id", ordering="job_id")
    def short_job_id(self, obj: DeadLetterRecord) -> str:
        return show.short_id(obj.job_id)

    @admin.display(description="error")
    def error_line(self, obj: DeadLetterRecord) -> str:
        return show.error_summary(obj.error, 80) or "-"

    @admin.display(description="state")
    def state(self, obj: DeadLetterRecord) -> SafeString:
        if obj.purged_at is not None:
            return show.badge("purged", "grey")
        if obj.requeued_at is not None:
            return show.badge("requeued", "blue")
        return show.badge("dead", "purple")

    @admin.display(description="job")
    def job(self, obj: DeadLetterRecord) -> SafeString | str:
        record = JobRecord.objects.filter(job_id=obj.job_id).only("pk").first()
        return "-" if record is None else show.admin_link("jobrecord", record.pk, "job record")

    @admin.display(description="error")
    def error_pre(self, obj: DeadLetterRecord) -> SafeString:
        return show.pre(obj.error)

    @admin.display(description="arguments")
    def args_json(self, obj: DeadLetterRecord) -> SafeString:
        return show.pretty_json(obj.args)

    @admin.display(description="raw body excerpt")
    def raw_pre(self, obj: DeadLetterRecord) -> SafeString:
        return show.pre(obj.raw)


@admin.register(WorkerRecord)
class WorkerRecordAdmin(ConsoleAdmin):
    list_display = (
        "worker_id",
        "host",
        "pid",
        "liveness",
        "heartbeat",
        "state",
        "queue_list",
        "concurrency",
        "running",
        "processed",
        "failed",
        "started_at",
    )
    list_filter = (AliveFilter, "state", "host")
    search_fields = ("^worker_id", "^host")
    fields = (*list_display, "last_heartbeat")
    readonly_fields = ("liveness", "heartbeat", "queue_list")

    @admin.display(description="alive")
    def liveness(self, obj: WorkerRecord) -> SafeString:
        return show.alive_badge(obj.is_alive(alive_within()))

    @admin.display(description="last heartbeat", ordering="last_heartbeat")
    def heartbeat(self, obj: WorkerRecord) -> str:
        return show.age(obj.last_heartbeat)

    @admin.display(description="queues")
    def queue_list(self, obj: WorkerRecord) -> str:
        return ", ".join(str(name) for name in obj.queues or []) or "-"
