"""List filters of the admin console."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone


class DeadLetterStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("dead", "Dead (in the broker)"), ("requeued", "Requeued"), ("purged", "Purged")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "dead":
            return queryset.filter(requeued_at=None, purged_at=None)
        if value == "requeued":
            return queryset.exclude(requeued_at=None)
        if value == "purged":
            return queryset.exclude(purged_at=None)
        return queryset


class WithinFilter(admin.SimpleListFilter):
    """A time filter with fixed windows back from now (the last hour, day, week, or older),
    each one index range on ``field``: bounded work at any table size, unlike a date hierarchy
    (a ``DISTINCT`` of dates over the whole table) or a date filter on an unindexed column."""

    field = ""
    windows: dict[str, tuple[str, timedelta]] = {
        "15m": ("Last 15 minutes", timedelta(minutes=15)),
        "1h": ("Last hour", timedelta(hours=1)),
        "24h": ("Last 24 hours", timedelta(days=1)),
        "7d": ("Last 7 days", timedelta(days=7)),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.windows.items()] + [
            ("older", "Older than 7 days")
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value in self.windows:
            return queryset.filter(
                **{f"{self.field}__gte": timezone.now() - self.windows[value][1]}
            )
        if value == "older":
            return queryset.filter(**{f"{self.field}__lt": timezone.now() - timedelta(days=7)})
        return queryset


class UpdatedFilter(WithinFilter):
    title = "updated"
    parameter_name = "updated"
    field = "updated_at"


class FailedFilter(WithinFilter):
    title = "failed"
    parameter_name = "failed"
    field = "failed_at"


class AliveFilter(admin.SimpleListFilter):
    title = "liveness"
    parameter_name = "alive"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Alive"), ("no", "Dead or stopped")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        since = timezone.now() - alive_within()
        alive = queryset.filter(last_heartbeat__gte=since).exclude(state="stopped")
        if self.value() == "yes":
            return alive
        if self.value() == "no":
            return queryset.exclude(pk__in=alive.values("pk"))
        return queryset


def alive_within() -> timedelta:
    """A worker whose last heartbeat is older than this is shown dead (``LEASE_TTL``, >= 30 s)."""
    from ..conf import get_settings

    return timedelta(seconds=max(30.0, get_settings().lease_ttl))


class KnownChoicesFilter(admin.SimpleListFilter):
    """A filter on a column whose choices are the names this process knows (the project's
    actors and queues, and the queues workers reported), never a ``DISTINCT`` scan of a table of
    millions of rows. ``?actor=...`` and ``?queue=...`` keep working for any value."""

    field = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(self.known())]

    def known(self) -> set[str]:
        raise NotImplementedError

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


class ActorFilter(KnownChoicesFilter):
    title = "actor"
    parameter_name = field = "actor"

    def known(self) -> set[str]:
        from ..worker.discovery import registry

        return set(registry.actors())


class QueueFilter(KnownChoicesFilter):
    title = "queue"
    parameter_name = field = "queue"

    def known(self) -> set[str]:
        from ..models import QueueRecord
        from ..worker.discovery import registry

        queues = {actor.queue for actor in registry.actors().values()}
        return queues | set(QueueRecord.objects.values_list("name", flat=True))
