"""``{% repid_dashboard %}``: queue depths, workers and recent failures on the admin app index."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template
from django.utils import timezone

from ..admin.counts import counts_by
from ..admin.display import STATUS_TONES, age, error_summary
from ..depths import live_stats, queue_depths
from ..engine.brokers.redis.url import redact_url
from ..models import DeadLetterRecord, JobRecord, JobStatus, WorkerRecord

register = template.Library()


def broker_label() -> str:
    """Where the broker is, with any password redacted."""
    from ..conf import get_settings

    current = get_settings()
    if current.broker_url is None:
        return f"embedded Redis in {current.embedded_dir}"
    return redact_url(current.broker_url)


@register.inclusion_tag("admin/repid_django/dashboard.html", takes_context=True)
def repid_dashboard(context: template.Context) -> dict[str, Any]:
    from ..admin.filters import alive_within
    from ..admin.views import can_manage

    request = context["request"]
    depths = queue_depths()
    within = alive_within()
    workers = [
        {
            "record": record,
            "alive": record.is_alive(within),
            "age": age(record.last_heartbeat),
            "queues": ", ".join(str(name) for name in record.queues or []),
        }
        for record in WorkerRecord.objects.all()[:10]
    ]
    since = timezone.now() - timedelta(hours=24)
    recent = JobRecord.objects.filter(updated_at__gte=since)
    counts = counts_by(recent, "status", JobStatus.values)  # bounded at any size
    statuses = [
        {
            "value": status.value,
            "label": status.label,
            "tone": STATUS_TONES[status],
            "count": counts[status.value],
        }
        for status in JobStatus
    ]
    failures = [
        {"record": record, "summary": error_summary(record.error, 100)}
        for record in DeadLetterRecord.objects.filter(requeued_at=None, purged_at=None)[:5]
    ]
    return {
        "request": request,
        "queues": depths,
        "live": all(depth.live for depth in depths) if depths else live_stats([]) is not None,
        "broker": broker_label(),
        "workers": workers,
        "workers_alive": sum(1 for worker in workers if worker["alive"]),
        "statuses": statuses,
        "failures": failures,
        "can_manage": can_manage(request),
    }
