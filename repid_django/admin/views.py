"""The console's operation views: POST only, CSRF-checked, ``repid_django.manage_jobs`` only.

Each view is reached from a button on a change page or a queue row. A view refuses users
without the permission (403) before anything else, refuses any method but POST (405), and for
destructive operations answers the first POST with a confirmation page; only a second POST with
``confirm=yes`` acts. Bulk changelist actions (``admin_actions``) share the confirmation page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.http import HttpResponseRedirect as Redirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from .. import ops
from ..depths import live_stats
from ..engine.queue import validate_queue_name
from ..models import DeadLetterRecord, JobRecord
from .display import PERMISSION

if TYPE_CHECKING:
    from django.db.models import Model

View = Callable[..., HttpResponse]


def can_manage(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.is_staff and user.has_perm(PERMISSION))


def operation(view: View) -> View:
    """Permission first (403), then the method (405): a GET never changes anything."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_manage(request):
            raise PermissionDenied(f"this operation needs the {PERMISSION!r} permission")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return view(request, *args, **kwargs)

    return wrapper


def confirmed(request: HttpRequest) -> bool:
    return request.POST.get("confirm") == "yes"


def confirm_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin[Any],
    *,
    title: str,
    question: str,
    items: Sequence[str],
    hidden: Mapping[str, str | Sequence[str]],
    cancel_url: str,
    action_url: str = "",
) -> TemplateResponse:
    """The "are you sure?" page; its form posts ``hidden`` fields plus ``confirm=yes``."""
    fields: list[tuple[str, str]] = []
    for name, value in hidden.items():
        values = [value] if isinstance(value, str) else list(value)
        fields.extend((name, item) for item in values)
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "question": question,
        "items": items,
        "hidden_fields": fields,
        "cancel_url": cancel_url,
        "action_url": action_url,
        "opts": opts,
        "app_label": opts.app_label,
    }
    return TemplateResponse(request, "admin/repid_django/confirm.html", context)


def report_unavailable(request: HttpRequest, exc: ops.BrokerUnavailable) -> None:
    messages.error(request, str(exc))


def safe_next(request: HttpRequest) -> str | None:
    """The posted ``next`` URL when it stays on this site (else ``None``): no other host, no
    ``//host`` or ``/\\host`` trick, and no step down from HTTPS."""
    url = request.POST.get("next")
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return None


def _changelist(model: type[Model]) -> str:
    meta = model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")


def _change(obj: Model) -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=(obj.pk,))


def say_requeued(request: HttpRequest, outcome: ops.Requeued) -> None:
    if outcome.done:
        messages.success(
            request, f"Requeued {len(outcome.done)} dead letter(s); a worker runs them again."
        )
    if outcome.missing:
        messages.warning(
            request,
            f"{len(outcome.missing)} dead letter(s) were no longer in the broker's dead-letter "
            "queue (expired, purged or requeued already): " + ", ".join(outcome.missing[:10]),
        )
    if outcome.kept:
        messages.warning(
            request,
            f"{len(outcome.kept)} dead letter(s) could not be decoded and stay dead-lettered: "
            + ", ".join(outcome.kept[:10]),
        )


CANCEL_MESSAGES: dict[str, tuple[int, str]] = {
    "removed": (
        messages.SUCCESS,
        "Removed {n} waiting job(s) from their queue: they will not run. {ids}",
    ),
    "stopping": (
        messages.SUCCESS,
        "Asked the workers to stop {n} running job(s): they end as cancelled within a second "
        "or so, and are not retried. {ids}",
    ),
    "unknown": (
        messages.WARNING,
        "{n} job(s) had already finished (or were not in their queue any more): nothing to "
        "cancel. {ids}",
    ),
}


def say_cancelled(request: HttpRequest, outcome: Mapping[str, Sequence[str]]) -> None:
    """One message per outcome of ``ops.cancel_job`` (``removed``, ``stopping``, ``unknown``)."""
    for state, (level, text) in CANCEL_MESSAGES.items():
        ids = outcome.get(state) or []
        if ids:
            shown = ", ".join(ids[:10]) + (" …" if len(ids) > 10 else "")
            messages.add_message(request, level, text.format(n=len(ids), ids=f"({shown})"))


# ------------------------------------------------------------------------- dead letters


def dead_letter_views(model_admin: admin.ModelAdmin[Any]) -> dict[str, View]:
    @operation
    def requeue(request: HttpRequest, pk: int) -> HttpResponse:
        letter = get_object_or_404(DeadLetterRecord, pk=pk)
        try:
            say_requeued(request, ops.requeue_dead(letter.queue, [letter.job_id]))
        except ops.BrokerUnavailable as exc:
            report_unavailable(request, exc)
        return Redirect(_change(letter))

    @operation
    def purge(request: HttpRequest, pk: int) -> HttpResponse:
        letter = get_object_or_404(DeadLetterRecord, pk=pk)
        if not confirmed(request):
            return confirm_page(
                request,
                model_admin,
                title="Delete this dead letter?",
                question=(
                    f"The dead letter of job {letter.job_id} is deleted from the broker for good: "
                    "it cannot be requeued afterwards. The record stays here, marked purged."
                ),
                items=[str(letter)],
                hidden={},
                cancel_url=_change(letter),
            )
        try:
            count = ops.purge_dead(letter.queue, [letter.job_id])
            messages.success(request, f"Deleted {count} dead letter(s) from the broker.")
        except ops.BrokerUnavailable as exc:
            report_unavailable(request, exc)
        return Redirect(_change(letter))

    return {"requeue": requeue, "purge": purge}


# --------------------------------------------------------------------------------- jobs


def job_views(model_admin: admin.ModelAdmin[Any]) -> dict[str, View]:
    @operation
    def retry(request: HttpRequest, pk: int) -> HttpResponse:
        job = get_object_or_404(JobRecord, pk=pk)
        try:
            new_id = ops.retry_job(job)
        except ValueError as exc:
            messages.warning(request, str(exc))
            return Redirect(_change(job))
        except ops.BrokerUnavailable as exc:
            report_unavailable(request, exc)
            return Redirect(_change(job))
        messages.success(request, f"Job {job.job_id} was sent again as {new_id}.")
        target = JobRecord.objects.filter(job_id=new_id).first()
        return Redirect(_change(target or job))

    @operation
    def cancel(request: HttpRequest, pk: int) -> HttpResponse:
        job = get_object_or_404(JobRecord, pk=pk)
        try:
            state = ops.cancel_job(job.queue, job.job_id)
        except ops.BrokerUnavailable as exc:
            report_unavailable(request, exc)
        else:
            if state == "removed":
                messages.success(
                    request, f"Job {job.job_id} was removed from its queue: it will not run."
                )
            elif state == "stopping":
                messages.success(
                    request,
                    f"Job {job.job_id} is running: its worker was asked to stop it. It ends as "
                    "cancelled within a second or so, and is not retried.",
                )
            else:
                messages.warning(
                    request,
                    f"Job {job.job_id} is not waiting or running in queue {job.queue!r} any "
                    "more (it has finished already): nothing was cancelled.",
                )
        return Redirect(_change(job))

    return {"retry": retry, "cancel": cancel}


# ------------------------------------------------------------------------------- queues

QUEUE_OPERATIONS: dict[str, tuple[str, str]] = {
    "purge": (
        "Purge queue {name}?",
        "Every waiting job of queue {name} (ready and delayed: {waiting} now) is removed and "
        "will not run. Running jobs finish. This cannot be undone.",
    ),
    "requeue-dead": (
        "Requeue all dead letters of queue {name}?",
        "All {dead} dead letter(s) of queue {name} are put back in the queue and run again "
        "(their attempts start over).",
    ),
    "purge-dead": (
        "Delete all dead letters of queue {name}?",
        "All {dead} dead letter(s) of queue {name} are deleted from the broker; they can no "
        "longer be requeued. This cannot be undone.",
    ),
}


def run_queue_operation(request: HttpRequest, kind: str, name: str) -> None:
    """Do ``kind`` on queue ``name`` and report it with a message."""
    try:
        if kind == "purge":
            count = ops.purge_queue(name)
            messages.success(request, f"Removed {count} waiting job(s) from queue {name!r}.")
        elif kind == "requeue-dead":
            say_requeued(request, ops.requeue_dead(name))
        elif kind == "purge-dead":
            count = ops.purge_dead(name)
            messages.success(request, f"Deleted {count} dead letter(s) of queue {name!r}.")
        elif kind == "pause":
            ops.pause_queue(name)
            messages.success(
                request,
                f"Paused queue {name!r}: workers start none of its jobs from their next claim "
                "(running jobs finish; new jobs wait) until it is resumed.",
            )
        else:
            ops.resume_queue(name)
            messages.success(request, f"Resumed queue {name!r}: workers take its jobs again.")
    except ops.BrokerUnavailable as exc:
        report_unavailable(request, exc)


SWITCHES = ("pause", "resume")
"""Queue operations that act at the first POST (nothing is lost: they are undone by the other)."""


def queue_views(model_admin: admin.ModelAdmin[Any]) -> dict[str, View]:
    def make(kind: str) -> View:
        @operation
        def view(request: HttpRequest, name: str) -> HttpResponse:
            try:
                validate_queue_name(name)
            except ValueError:
                raise Http404("no such queue") from None
            back = safe_next(request) or _changelist(model_admin.model)
            if kind not in SWITCHES and not confirmed(request):
                stats = (live_stats([name]) or {}).get(name)
                waiting = "?" if stats is None else str(stats.ready + stats.delayed)
                dead = "?" if stats is None else str(stats.dead)
                title, question = QUEUE_OPERATIONS[kind]
                return confirm_page(
                    request,
                    model_admin,
                    title=title.format(name=name),
                    question=question.format(name=name, waiting=waiting, dead=dead),
                    items=[],
                    hidden={"next": back},
                    cancel_url=back,
                )
            run_queue_operation(request, kind, name)
            return Redirect(back)

        return view

    return {kind: make(kind) for kind in (*QUEUE_OPERATIONS, *SWITCHES)}
