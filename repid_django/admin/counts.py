"""Counts of the dashboard that stay cheap at any table size.

"Jobs in the last 24 hours" by status is one ``GROUP BY`` while PostgreSQL's estimate of the
window is below :data:`~repid_django.admin.paginator.THRESHOLD` rows, and on a database with no
such estimate (SQLite, MySQL). Above it (a busy site mirrors millions of jobs a day), each status
is shown as the planner's estimate (``"≈ 1,340,000"``) when that is at least :data:`CAP` rows,
and otherwise counted exactly but never past ``CAP`` (``COUNT(*)`` of a ``LIMIT``: one index
range of at most ``CAP`` rows, ``"> 1,000"`` when there are more).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Count, QuerySet

from .paginator import THRESHOLD, estimated_count

CAP = 1_000
"""A status with fewer rows than this (by the estimate) is counted exactly, up to this many
(about a millisecond of index entries)."""

Shown = int | str
"""An exact count, or the text of an estimate or a bound."""


def counts_by(queryset: QuerySet[Any], field: str, values: Iterable[str]) -> dict[str, Shown]:
    """Rows of ``queryset`` for each of ``values`` of ``field`` (see the module docstring)."""
    wanted = list(values)
    total = estimated_count(queryset)
    if total is None or total < THRESHOLD:
        found = dict(
            queryset.order_by().values_list(field).annotate(n=Count("pk")).values_list(field, "n")
        )
        return {value: int(found.get(value, 0)) for value in wanted}
    shown: dict[str, Shown] = {}
    for value in wanted:
        subset = queryset.filter(**{field: value}).order_by()
        estimate = estimated_count(subset)
        if estimate is not None and estimate >= CAP:
            shown[value] = f"≈ {estimate:,}"
            continue
        exact = subset.values("pk")[: CAP + 1].count()
        shown[value] = exact if exact <= CAP else f"> {CAP:,}"
    return shown
