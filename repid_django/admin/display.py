"""Small HTML renderers the admin console uses (every value is escaped)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..models import JobStatus

if TYPE_CHECKING:
    from ..ops import Progress

PERMISSION = "repid_django.manage_jobs"
"""The permission every operation of the console requires (requeue, retry, cancel, purge)."""

STATUS_TONES: dict[str, str] = {
    JobStatus.QUEUED: "grey",
    JobStatus.RUNNING: "blue",
    JobStatus.RETRYING: "amber",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "red",
    JobStatus.DEAD: "purple",
    JobStatus.CANCELLED: "grey",
}
"""Badge tones (CSS classes in ``repid_django/admin.css``; no inline styles, CSP-friendly)."""


def pretty_json(value: Any) -> SafeString:
    """Indented JSON in an escaped ``<pre>`` (``-`` when empty)."""
    if value is None:
        return format_html('<span class="repid-muted">{}</span>', "-")
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return format_html('<pre class="repid-pre">{}</pre>', text)


def pre(text: str | None) -> SafeString:
    """A traceback or any other text in an escaped ``<pre>``."""
    if not text:
        return format_html('<span class="repid-muted">{}</span>', "-")
    return format_html('<pre class="repid-pre repid-traceback">{}</pre>', text)


def error_summary(text: str | None, limit: int = 120) -> str:
    """The last line of a traceback (the exception and its message), shortened."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    return last if len(last) <= limit else last[: limit - 1] + "…"


def short_id(job_id: str) -> str:
    return job_id if len(job_id) <= 14 else job_id[:12] + "…"


def badge(label: str, tone: str) -> SafeString:
    """A coloured label; ``tone`` is one of grey, blue, amber, green, red, purple."""
    return format_html('<span class="repid-badge repid-{}">{}</span>', tone, label)


def status_badge(status: str, label: str) -> SafeString:
    return badge(label, STATUS_TONES.get(status, "grey"))


def alive_badge(alive: bool) -> SafeString:
    return badge("alive", "green") if alive else badge("dead", "red")


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """``"12 s ago"``, ``"3 min ago"``, ``"2 h ago"`` or ``"4 d ago"``."""
    if moment is None:
        return "-"
    seconds = max(0.0, ((now or timezone.now()) - moment).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86_400:.0f} d ago"


def duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def progress(report: Progress, *, running: bool = True) -> SafeString:
    """A progress bar with the percentage, the text and how old the report is."""
    return format_html(
        '<span class="repid-progress-cell" data-value="{}">'
        '<progress class="repid-progress" value="{}" max="1">{}%</progress> '
        '<strong>{}%</strong> <span class="repid-progress-text">{}</span> '
        '<span class="repid-muted">{} {}</span></span>',
        f"{report.value:.4f}",
        f"{report.value:.4f}",
        report.percent,
        report.percent,
        report.text,
        "reported" if running else "last reported",
        age(report.at, datetime.now(UTC)),  # aware, whatever USE_TZ says
    )


def admin_link(model_name: str, pk: object, label: str) -> SafeString:
    url = reverse(f"admin:repid_django_{model_name}_change", args=(pk,))
    return format_html('<a href="{}">{}</a>', url, label)


def changelist_link(model_name: str, label: str, **filters: str) -> SafeString:
    url = reverse(f"admin:repid_django_{model_name}_changelist")
    if filters:
        from urllib.parse import urlencode

        url = f"{url}?{urlencode(filters)}"
    return format_html('<a href="{}">{}</a>', url, label)
