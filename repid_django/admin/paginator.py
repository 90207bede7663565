"""Pagination of big changelists without an exact ``COUNT(*)`` on every page.

A ``COUNT(*)`` reads the whole table (or the whole filtered part of it): on PostgreSQL with
millions of mirrored jobs that is seconds per page. :class:`EstimatedCountPaginator` asks
PostgreSQL's statistics first, the way large Django sites do: for the whole table
``pg_class.reltuples`` (kept by ``ANALYZE`` and autovacuum), for a filtered list the planner's
row estimate (``EXPLAIN``). Only an estimate below ``threshold`` rows, or a database without
such statistics (SQLite, MySQL), costs an exact count, which is cheap there or then.

Pages stop at ``max_pages`` (the newest 10,000 rows at 50 a page): a page is an
``OFFSET``, which reads every row before it, so the last page of ten million jobs would cost
as much as a ``COUNT(*)``. Beyond it, a filter or a search narrows the list.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet

MAX_PAGES = 200
"""The deepest page a list offers (see the module docstring)."""
THRESHOLD = 10_000
"""Below this many rows (by the estimate) the count is exact: as many as the pages offered
(``MAX_PAGES`` of the admin's 50), so an exact count could still move the last page link, and
it reads at most about this many index entries (a few milliseconds)."""


def estimated_count(queryset: QuerySet[Any]) -> int | None:
    """PostgreSQL's estimate of ``queryset``'s rows, or ``None`` when there is none (another
    database, a table never analysed)."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    if not queryset.query.where:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)",
                [connection.ops.quote_name(queryset.model._meta.db_table)],
            )
            row = cursor.fetchone()
        # -1 (PostgreSQL >= 14) or 0: never analysed, so no estimate.
        return int(row[0]) if row and row[0] and row[0] > 0 else None
    plan = json.loads(queryset.order_by().explain(format="json"))
    rows = plan[0]["Plan"]["Plan Rows"]
    return int(rows) if rows else None


if TYPE_CHECKING:
    BasePaginator = Paginator[Any]
else:
    BasePaginator = Paginator


class EstimatedCountPaginator(BasePaginator):
    """A :class:`~django.core.paginator.Paginator` whose ``count`` is PostgreSQL's estimate
    above ``threshold`` rows (see the module docstring), exact otherwise; and whose pages stop
    at ``max_pages``."""

    threshold = THRESHOLD
    max_pages = MAX_PAGES

    @cached_property
    def num_pages(self) -> int:
        return min(int(super().num_pages), self.max_pages)

    @cached_property
    def count(self) -> int:
        if isinstance(self.object_list, QuerySet):
            estimate = estimated_count(self.object_list)
            if estimate is not None and estimate >= self.threshold:
                return estimate
        return int(super().count)
