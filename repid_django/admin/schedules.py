"""The schedules in the admin: add, edit, disable, preview and run now.

The form validates by building the engine's schedule, each problem on its field (cron, time
zone, JSON args, actor, interval); the actor is chosen from the actors the project declares.
Schedules declared in code or settings are shown read-only but for ``enabled`` (the next sync
would undo any other edit) and cannot be deleted here. "Run now" (a button and a bulk action)
is POST only, CSRF-checked and needs the change permission: it enqueues one job at once with
the schedule's actor, args, queue and priority. Workers read the table every two seconds, so an
edit takes effect within about two seconds everywhere.
"""

from __future__ import annotations

import uuid
import zoneinfo
from functools import cache
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.http import HttpResponseRedirect as Redirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..engine.job import Job
from ..engine.schedules.spec import ScheduleError
from ..models import JobRecord, JobStatus, Schedule
from . import display as show
from .schedule_status import TIME_FORMAT, LastRun, describe, last_runs, next_runs

if TYPE_CHECKING:
    BaseAdmin = admin.ModelAdmin[Schedule]
    BaseForm = forms.ModelForm[Schedule]
else:
    BaseAdmin = admin.ModelAdmin
    BaseForm = forms.ModelForm

FIELDS = ("name", "actor", "cron", "every", "tz", "args", "queue", "priority", "enabled", "missed")
DECLARED_READONLY = tuple(f for f in FIELDS if f != "enabled")
"""On a code or settings schedule everything but ``enabled`` is read-only."""


def known_actors() -> list[str]:
    from ..worker.discovery import registry

    return sorted(registry.actors())


@cache
def _zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


class TimeZoneInput(forms.TextInput):
    """A text input that suggests the IANA zone names (a ``<datalist>``)."""

    def __init__(self) -> None:
        super().__init__(attrs={"list": "repid-time-zones", "autocomplete": "off", "size": 30})

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        field = super().render(name, value, attrs, renderer)
        options = format_html_join("", '<option value="{}">', ((zone,) for zone in _zones()))
        return format_html('{}<datalist id="repid-time-zones">{}</datalist>', field, options)


class ScheduleForm(BaseForm):
    """Checks a schedule by building the engine's: each problem on the field that has it."""

    class Meta:
        model = Schedule
        fields = FIELDS
        widgets = {"tz": TimeZoneInput()}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "actor" in self.fields:
            actors = known_actors()
            choices = [("", "---------"), *((name, name) for name in actors)]
            current = self.instance.actor if self.instance.pk else None
            if current and current not in actors:
                choices.append((current, f"{current} (no installed app declares it)"))
            self.fields["actor"] = forms.ChoiceField(
                label="actor",
                choices=choices,
                help_text="The actor each run calls (the actors of every installed app's "
                "tasks.py).",
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        candidate = Schedule(**{name: getattr(self.instance, name) for name in FIELDS})
        candidate.source = self.instance.source
        for name, value in cleaned.items():
            if name in FIELDS:
                setattr(candidate, name, value)
        for name, message in candidate.field_errors().items():
            self.add_error(name if name in self.fields else None, message)
        if "actor" in self.fields and candidate.actor not in known_actors():
            self.add_error(
                "actor",
                f"unknown actor {candidate.actor!r}: no installed app declares it; choose one "
                "of the list",
            )
        return cleaned


@admin.action(description="Run selected schedules now", permissions=["change"])
def run_selected_now(
    model_admin: ScheduleAdmin, request: HttpRequest, queryset: QuerySet[Schedule]
) -> None:
    for row in queryset:
        if not _run_now(request, row):
            break


def _run_now(request: HttpRequest, row: Schedule) -> bool:
    """Enqueue one job of ``row`` now and say so; ``False`` when the broker refused."""
    job = Job(
        row.actor,
        queue=row.queue,
        priority=row.priority,
        args=row.args,
        id_=f"sched:{row.name}:now-{uuid.uuid4().hex[:12]}",
    )
    try:
        job_id = job.enqueue().value
    except (ConnectionError, OSError, TimeoutError, TypeError, ValueError) as exc:
        messages.error(
            request,
            f"Schedule {row.name}: nothing was enqueued ({type(exc).__name__}: {exc}). "
            "Check that Redis is running and REPID['BROKER_URL'] points at it.",
        )
        return False
    record, _ = JobRecord.objects.get_or_create(
        job_id=job_id,
        defaults={
            "actor": row.actor,
            "queue": row.queue,
            "priority": row.priority,
            "args": row.args,
            "status": JobStatus.QUEUED,
        },
    )
    messages.success(
        request,
        format_html(
            "Schedule {}: enqueued job {} ({} on queue {}).",
            row.name,
            show.admin_link("jobrecord", record.pk, job_id),
            row.actor,
            row.queue,
        ),
    )
    return True


@admin.register(Schedule)
class ScheduleAdmin(BaseAdmin):
    form = ScheduleForm
    list_display = (
        "name",
        "actor",
        "when",
        "enabled",
        "next_run",
        "last_run",
        "queue",
        "source",
    )
    list_filter = ("source", "enabled", "queue", "actor")
    search_fields = ("^name", "^actor")
    actions = (run_selected_now,)
    list_per_page = 50

    class Media:
        css = {"all": ("repid_django/admin.css",)}

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return (
            (None, {"fields": ("name", "actor", "args", "queue", "priority", "enabled")}),
            ("When", {"fields": ("cron", "every", "tz", "missed")}),
            ("Runs", {"fields": ("next_runs_preview", "last_run", "source")}),
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        base = ("next_runs_preview", "last_run", "source")
        return (*DECLARED_READONLY, *base) if obj is not None and obj.declared else base

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.declared:
            return False  # it would come back at the next sync: disable it instead
        return super().has_delete_permission(request, obj)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.run_now_view)
        return [
            path("<int:pk>/run-now/", view, name="repid_django_schedule_run_now"),
            *super().get_urls(),
        ]

    def run_now_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """POST only, the change permission first (403), then the method (405)."""
        row = get_object_or_404(Schedule, pk=pk)
        if not self.has_change_permission(request, row):
            raise PermissionDenied("running a schedule now needs the permission to change it")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        _run_now(request, row)
        return Redirect(reverse("admin:repid_django_schedule_change", args=(row.pk,)))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        from ..worker.schedules import sync_schedules

        try:  # the code and settings schedules of this deployment, as workers will sync them
            sync_schedules()
        except ScheduleError as exc:
            messages.error(request, f"REPID['SCHEDULES']: {exc}. Showing the last synced rows.")
        return super().changelist_view(request, extra_context)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)
        found = last_runs(rows)
        for row in rows:
            row.repid_last = "unknown" if found is None else found.get(row.name)
        return changelist

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None and self.has_change_permission(request, obj):
            url = reverse("admin:repid_django_schedule_run_now", args=(obj.pk,))
            context["repid_operations"] = [{"label": "Run now", "url": url, "style": ""}]
        return super().change_view(request, object_id, form_url, context)

    # columns ---------------------------------------------------------------------------------
    @admin.display(description="schedule")
    def when(self, obj: Schedule) -> str:
        return describe(obj)

    @admin.display(description="next run")
    def next_run(self, obj: Schedule) -> str:
        if not obj.enabled:
            return "disabled"
        upcoming = next_runs(obj, 1)
        return upcoming[0].strftime(TIME_FORMAT) if upcoming else "-"

    @admin.display(description="next five runs")
    def next_runs_preview(self, obj: Schedule) -> SafeString | str:
        upcoming = next_runs(obj, 5) if obj.pk else []
        if not upcoming:
            return "-" if obj.pk else "shown once saved"
        items = format_html_join("", "<li>{}</li>", ((t.strftime(TIME_FORMAT),) for t in upcoming))
        note = "" if obj.enabled else " (disabled: these ticks pass without a job)"
        return format_html('<ul class="repid-runs">{}</ul>{}', items, note)

    @admin.display(description="last run")
    def last_run(self, obj: Schedule) -> SafeString | str:
        if not obj.pk:
            return "-"
        found: LastRun | str | None
        if hasattr(obj, "repid_last"):
            found = obj.repid_last
        else:
            runs = last_runs([obj])
            found = "unknown" if runs is None else runs.get(obj.name)
        if found is None:
            return "not yet"
        if isinstance(found, str):
            return format_html('<span class="repid-muted">{}</span>', "broker unavailable")
        if found.record_pk is not None:
            job = show.admin_link("jobrecord", found.record_pk, found.job_id)
        else:
            job = format_html('<span class="repid-muted">{}</span>', found.job_id)
        return format_html("{} · {}", found.label, job)
