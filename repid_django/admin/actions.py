"""Bulk changelist actions. Each needs ``repid_django.manage_jobs`` (``permissions=["manage"]``:
Django hides them from users without it and refuses them). Destructive ones first answer with
a confirmation page and act only on the second POST (``confirm=yes``)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from .. import ops
from ..models import FINAL_STATUSES, DeadLetterRecord, JobRecord, QueueRecord
from .views import (
    confirm_page,
    confirmed,
    report_unavailable,
    run_queue_operation,
    say_cancelled,
    say_requeued,
)

if TYPE_CHECKING:
    Admin = admin.ModelAdmin[Any]


def _confirm_selected(
    model_admin: Admin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    action: str,
    title: str,
    question: str,
) -> HttpResponse:
    meta = model_admin.model._meta
    return confirm_page(
        request,
        model_admin,
        title=title,
        question=question,
        items=[str(obj) for obj in queryset[:50]],
        hidden={
            "action": action,
            helpers.ACTION_CHECKBOX_NAME: [str(pk) for pk in queryset.values_list("pk", flat=True)],
        },
        cancel_url=reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"),
    )


# ------------------------------------------------------------------------- dead letters


def _ids_by_queue(queryset: QuerySet[DeadLetterRecord]) -> list[tuple[str, list[str]]]:
    """The selected dead letters' job ids, grouped by queue (one engine call per queue)."""
    by_queue: dict[str, list[str]] = defaultdict(list)
    for queue, job_id in queryset.values_list("queue", "job_id"):
        by_queue[queue].append(job_id)
    return sorted(by_queue.items())


@admin.action(description="Requeue selected dead letters", permissions=["manage"])
def requeue_selected(
    model_admin: Admin, request: HttpRequest, queryset: QuerySet[DeadLetterRecord]
) -> None:
    try:
        for queue, ids in _ids_by_queue(queryset):
            say_requeued(request, ops.requeue_dead(queue, ids))
    except ops.BrokerUnavailable as exc:
        report_unavailable(request, exc)


@admin.action(description="Delete selected dead letters from the broker", permissions=["manage"])
def purge_selected(
    model_admin: Admin, request: HttpRequest, queryset: QuerySet[DeadLetterRecord]
) -> HttpResponse | None:
    if not confirmed(request):
        return _confirm_selected(
            model_admin,
            request,
            queryset,
            action="purge_selected",
            title="Delete the selected dead letters?",
            question=(
                f"{queryset.count()} dead letter(s) are deleted from the broker for good; they "
                "cannot be requeued afterwards. Their records stay here, marked purged."
            ),
        )
    try:
        count = sum(ops.purge_dead(queue, ids) for queue, ids in _ids_by_queue(queryset))
        messages.success(request, f"Deleted {count} dead letter(s) from the broker.")
    except ops.BrokerUnavailable as exc:
        report_unavailable(request, exc)
    return None


# --------------------------------------------------------------------------------- jobs


@admin.action(description="Retry selected failed jobs", permissions=["manage"])
def retry_selected(model_admin: Admin, request: HttpRequest, queryset: QuerySet[JobRecord]) -> None:
    retried = skipped = 0
    try:
        for job in queryset:
            if job.status not in ops.RETRYABLE:
                skipped += 1
                continue
            ops.retry_job(job)
            retried += 1
    except ops.BrokerUnavailable as exc:
        report_unavailable(request, exc)
    if retried:
        messages.success(request, f"Sent {retried} job(s) again.")
    if skipped:
        messages.warning(
            request, f"Skipped {skipped} job(s) that are not failed, dead-lettered or cancelled."
        )


@admin.action(description="Cancel selected waiting or running jobs", permissions=["manage"])
def cancel_selected(
    model_admin: Admin, request: HttpRequest, queryset: QuerySet[JobRecord]
) -> HttpResponse | None:
    if not confirmed(request):
        return _confirm_selected(
            model_admin,
            request,
            queryset,
            action="cancel_selected",
            title="Cancel the selected jobs?",
            question=(
                f"Those of the {queryset.count()} selected job(s) still waiting in their queue "
                "are removed and will not run; running ones are stopped (they end as "
                "cancelled, and are not retried). Finished jobs are not affected."
            ),
        )
    outcome: dict[str, list[str]] = defaultdict(list)
    finished = 0
    try:
        for queue, job_id, status in queryset.values_list("queue", "job_id", "status"):
            if status in FINAL_STATUSES:
                finished += 1
                continue
            outcome[ops.cancel_job(queue, job_id)].append(job_id)
    except ops.BrokerUnavailable as exc:
        report_unavailable(request, exc)
    say_cancelled(request, outcome)
    if finished:
        messages.warning(request, f"Skipped {finished} job(s) that had already finished.")
    return None


# ------------------------------------------------------------------------------- queues


def _queue_action(kind: str, action: str, description: str, question: str) -> Any:
    @admin.action(description=description, permissions=["manage"])
    def act(
        model_admin: Admin, request: HttpRequest, queryset: QuerySet[QueueRecord]
    ) -> HttpResponse | None:
        names = list(queryset.values_list("name", flat=True))
        if not confirmed(request):
            return _confirm_selected(
                model_admin,
                request,
                queryset,
                action=action,
                title=f"{description}?",
                question=question.format(names=", ".join(names)),
            )
        for name in names:
            run_queue_operation(request, kind, name)
        return None

    act.__name__ = action
    return act


purge_queues = _queue_action(
    "purge",
    "purge_queues",
    "Purge waiting jobs of selected queues",
    "Every waiting job (ready and delayed) of {names} is removed and will not run. Running "
    "jobs finish. This cannot be undone.",
)
requeue_all_dead = _queue_action(
    "requeue-dead",
    "requeue_all_dead",
    "Requeue all dead letters of selected queues",
    "Every dead letter of {names} is put back in its queue and runs again.",
)
purge_all_dead = _queue_action(
    "purge-dead",
    "purge_all_dead",
    "Delete all dead letters of selected queues",
    "Every dead letter of {names} is deleted from the broker for good. This cannot be undone.",
)


def _switch_action(kind: str, action: str, description: str) -> Any:
    """Pause or resume the selected queues at once (no confirmation: one undoes the other)."""

    @admin.action(description=description, permissions=["manage"])
    def act(model_admin: Admin, request: HttpRequest, queryset: QuerySet[QueueRecord]) -> None:
        for name in queryset.values_list("name", flat=True):
            run_queue_operation(request, kind, name)

    act.__name__ = action
    return act


pause_queues = _switch_action("pause", "pause_queues", "Pause selected queues")
resume_queues = _switch_action("resume", "resume_queues", "Resume selected queues")
