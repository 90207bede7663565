"""``{% repid_schedules %}``: the schedules panel of the admin app index (next and last runs)."""

from __future__ import annotations

from typing import Any

from django import template

from ..admin.schedule_status import overview
from ..models import Schedule

register = template.Library()

SHOWN = 20
"""Schedules the panel lists (the rest are one click away)."""


@register.inclusion_tag("admin/repid_django/schedules_panel.html", takes_context=True)
def repid_schedules(context: template.Context) -> dict[str, Any]:
    request = context["request"]
    user = request.user
    if not user.has_perm("repid_django.view_schedule"):
        return {"shown": False}
    rows = list(Schedule.objects.all()[:SHOWN])
    items, live = overview(rows)
    return {
        "shown": True,
        "schedules": items,
        "live": live,
        "more": max(0, Schedule.objects.count() - len(rows)) if len(rows) == SHOWN else 0,
    }
