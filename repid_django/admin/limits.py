"""Queue and actor limits in the console: how they are shown, and the form that sets a queue's.

The limits in force are read live from the broker (``QueueStats.limits``), like the paused
state; ``None`` (shown *unknown*) when it does not answer. A user with
``repid_django.manage_jobs`` may set a queue's own concurrency and rate limit on its page
(POST with CSRF; validated with :class:`~repid_django.engine.limits.Limits`; written in one
transaction, so a bad value changes nothing). Queues listed in ``REPID["QUEUE_LIMITS"]`` are
read-only here: ``runworker`` sets them from the settings when it starts. Actors' limits come
from their code (``@actor(concurrency_limit=..., rate_limit=...)``) and are only shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.http import HttpResponseRedirect as Redirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from .. import ops
from ..conf import get_settings
from ..depths import all_limits_data, describe, limits_data, limits_rows, rate_label
from ..engine.brokers.base import MessageBroker
from ..engine.limits import LimitError, Limits, parse_rate
from ..engine.queue import validate_queue_name
from ..models import QueueRecord
from .views import View, operation, report_unavailable

AllLimits = Mapping[str | None, Limits]
__all__ = ["all_limits_data", "describe", "limits_data", "limits_views", "rate_label"]


def limits_cell(found: AllLimits | None) -> SafeString | str:
    """The *limits* column: the queue's, then each limited actor's."""
    if found is None:
        return format_html('<span class="repid-muted">{}</span>', "unknown")
    rows = limits_rows(found)
    if not rows:
        return "-"
    return format_html_join(mark_safe("<br>"), "{}: {}", rows)


def from_settings(name: str) -> Limits | None:
    """The queue's limits from ``REPID["QUEUE_LIMITS"]`` (``None``: not listed there)."""
    return get_settings().queue_limits.get(name)


class QueueLimitsForm(forms.Form):
    """A queue's own limits; both empty removes them."""

    concurrency = forms.IntegerField(
        required=False,
        min_value=1,
        help_text="At most this many of the queue's jobs run at once, in all workers.",
    )
    rate = forms.CharField(
        required=False,
        max_length=32,
        help_text="At most this many starts per window: '100/m', '20/s', '5/10s'.",
    )

    def clean_rate(self) -> str | None:
        rate = (self.cleaned_data.get("rate") or "").strip()
        if not rate:
            return None
        try:
            parse_rate(rate)
        except LimitError as exc:
            raise forms.ValidationError(str(exc)) from None
        return rate

    def limits(self) -> Limits:
        """The validated limits (call after ``is_valid()``)."""
        try:
            return Limits(self.cleaned_data.get("concurrency"), self.cleaned_data.get("rate"))
        except LimitError as exc:  # pragma: no cover - the fields' checks come first
            raise forms.ValidationError(str(exc)) from None


def initial_for(found: AllLimits | None) -> dict[str, Any]:
    queue = (found or {}).get(None)
    if queue is None:
        return {}
    return {
        "concurrency": queue.concurrency,
        "rate": None if queue.rate is None else rate_label(queue.rate),
    }


def set_queue_limits(name: str, limits: Limits) -> None:
    """Replace queue ``name``'s own limits (``Limits()`` removes them), in one transaction;
    raises ``ops.BrokerUnavailable`` when the broker does not answer."""
    validate_queue_name(name)

    async def work(broker: MessageBroker) -> None:
        await broker.set_limits(name, {None: limits})

    ops._run(work)


def limits_views() -> dict[str, View]:
    @operation
    def limits(request: HttpRequest, name: str) -> HttpResponse:
        try:
            validate_queue_name(name)
        except ValueError:
            raise Http404("no such queue") from None
        record = QueueRecord.objects.filter(name=name).first()
        back = (
            reverse("admin:repid_django_queuerecord_change", args=(record.pk,))
            if record is not None
            else reverse("admin:repid_django_queuerecord_changelist")
        )
        if from_settings(name) is not None:
            messages.error(
                request,
                f"The limits of queue {name!r} come from REPID['QUEUE_LIMITS'] in the settings "
                "and are set again by every runworker at its start: change them there. "
                "Nothing was changed.",
            )
            return Redirect(back)
        form = QueueLimitsForm(request.POST)
        if not form.is_valid():
            problems = "; ".join(
                f"{field}: {' '.join(str(e) for e in errors)}"
                for field, errors in form.errors.items()
            )
            messages.error(request, f"Limits not changed: {problems}")
            return Redirect(back)
        chosen = form.limits()
        try:
            set_queue_limits(name, chosen)
        except ops.BrokerUnavailable as exc:
            report_unavailable(request, exc)
            return Redirect(back)
        if chosen.empty:
            messages.success(request, f"Queue {name!r} has no limit of its own any more.")
        else:
            messages.success(
                request,
                f"Queue {name!r} is limited to {describe(chosen)}, in all workers from their "
                "next claim.",
            )
        return Redirect(back)

    return {"limits": limits}
