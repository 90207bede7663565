"""The queues of the console: live depths, paused or not, and the queue operations (pause and
resume, purge waiting jobs, requeue or delete dead letters, set the queue's limits: see
``limits.py``) for ``repid_django.manage_jobs``.

Counts and the paused state are read live from the broker when the page is built; when it does
not answer, the counts are the workers' last mirrored report and the state is unknown. Each row
of the changelist has a Pause or Resume button: it submits the changelist's own form (with its
CSRF token) to the queue's pause or resume URL (``formaction``), so no form is nested in another.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..depths import live_stats
from ..models import QueueRecord
from . import actions
from . import display as show
from . import limits as lim
from .console import ConsoleAdmin, Operation
from .views import can_manage, queue_views


def queue_op_url(kind: str, name: str) -> str:
    return reverse(f"admin:repid_django_queuerecord_{kind.replace('-', '_')}", args=(name,))


def paused_of(obj: QueueRecord) -> bool | None:
    """Whether the queue is paused (``None``: the broker did not answer)."""
    live = getattr(obj, "repid_live", None)
    return None if live is None else bool(live.paused)


@admin.register(QueueRecord)
class QueueRecordAdmin(ConsoleAdmin):
    list_display = (
        "name",
        "state",
        "ready_n",
        "delayed_n",
        "running_n",
        "dead_n",
        "limits",
        "source",
        "links",
    )
    search_fields = ("^name",)
    actions = (
        actions.pause_queues,
        actions.resume_queues,
        actions.purge_queues,
        actions.requeue_all_dead,
        actions.purge_all_dead,
    )
    fields = list_display
    readonly_fields = fields

    def get_urls(self) -> list[URLPattern]:
        views = {**queue_views(self), **lim.limits_views()}
        return self._op_urls("by-name/<str:name>", views, "name") + super().get_urls()

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The queue's page, with its limits form (or why the limits are read-only)."""
        context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None:
            found = getattr(obj, "repid_limits", None)
            settings_limits = lim.from_settings(obj.name)
            context["repid_limits"] = {
                "queue": obj.name,
                "url": queue_op_url("limits", obj.name),
                "settings": None if settings_limits is None else lim.describe(settings_limits),
                "unknown": found is None,
                "form": (
                    lim.QueueLimitsForm(initial=lim.initial_for(found))
                    if can_manage(request) and settings_limits is None
                    else None
                ),
            }
        return super().change_view(request, object_id, form_url, context)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)
        live = live_stats([row.name for row in rows])  # depths, paused and limits: one read
        manage = can_manage(request)
        for row in rows:
            row.repid_live = None if live is None else live.get(row.name)
            row.repid_limits = None if row.repid_live is None else dict(row.repid_live.limits)
            row.repid_switch_back = request.get_full_path() if manage else None
        return changelist

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # The admin asks for the object more than once per page: read Redis once.
            read: dict[str, Any] = request.__dict__.setdefault("_repid_queue_live", {})
            if obj.name not in read:
                live = (live_stats([obj.name]) or {}).get(obj.name)
                read[obj.name] = (live, None if live is None else dict(live.limits))
            obj.repid_live, obj.repid_limits = read[obj.name]
        return obj

    def operations(self, request: HttpRequest, obj: QueueRecord) -> list[Operation]:
        here = reverse("admin:repid_django_queuerecord_change", args=(obj.pk,))

        def queue_op(kind: str, label: str, back: str = "") -> Operation:
            style = "danger" if "purge" in kind else ""
            return {
                "label": label,
                "url": queue_op_url(kind, obj.name),
                "style": style,
                "next": back,
            }

        found = []
        paused = paused_of(obj)
        if paused is not True:
            found.append(queue_op("pause", "Pause queue", here))
        if paused is not False:
            found.append(queue_op("resume", "Resume queue", here))
        return [
            *found,
            queue_op("requeue-dead", "Requeue all dead letters"),
            queue_op("purge-dead", "Delete all dead letters"),
            queue_op("purge", "Purge waiting jobs"),
        ]

    def _count(self, obj: QueueRecord, field: str) -> int:
        live = getattr(obj, "repid_live", None)
        return int(getattr(live if live is not None else obj, field))

    @admin.display(description="state")
    def state(self, obj: QueueRecord) -> SafeString:
        paused = paused_of(obj)
        if paused is None:
            label = show.badge("unknown", "grey")
        elif paused:
            label = show.badge("paused", "amber")
        else:
            label = show.badge("active", "green")
        back = getattr(obj, "repid_switch_back", None)
        if back is None:  # the change page (its buttons are above) or a viewer
            return label
        kind = "resume" if paused else "pause"
        return format_html(
            '{} <button type="submit" class="repid-op repid-switch" formaction="{}" '
            'formmethod="post" name="next" value="{}">{}</button>',
            label,
            queue_op_url(kind, obj.name),
            back,
            kind.capitalize(),
        )

    @admin.display(description="ready")
    def ready_n(self, obj: QueueRecord) -> int:
        return self._count(obj, "ready")

    @admin.display(description="delayed")
    def delayed_n(self, obj: QueueRecord) -> int:
        return self._count(obj, "delayed")

    @admin.display(description="running")
    def running_n(self, obj: QueueRecord) -> int:
        return self._count(obj, "running")

    @admin.display(description="dead letters")
    def dead_n(self, obj: QueueRecord) -> int:
        return self._count(obj, "dead")

    @admin.display(description="limits")
    def limits(self, obj: QueueRecord) -> SafeString | str:
        """The limits in force (queue and actors), live; *unknown* when Redis is silent."""
        return lim.limits_cell(getattr(obj, "repid_limits", None))

    @admin.display(description="counts from")
    def source(self, obj: QueueRecord) -> SafeString:
        if getattr(obj, "repid_live", None) is not None:
            return show.badge("live", "green")
        return format_html(
            '{} <span class="repid-muted">{}</span>',
            show.badge("snapshot", "amber"),
            show.age(obj.updated_at),
        )

    @admin.display(description="records")
    def links(self, obj: QueueRecord) -> SafeString:
        return format_html(
            "{} · {}",
            show.changelist_link("jobrecord", "jobs", queue=obj.name),
            show.changelist_link("deadletterrecord", "dead letters", queue=obj.name, state="dead"),
        )
