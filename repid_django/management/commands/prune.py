"""``python manage.py prune``: delete old rows of the ORM mirror (see ``--help``)."""

from __future__ import annotations

import re
from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils import timezone

from repid_django.models import (
    FINAL_STATUSES,
    DeadLetterRecord,
    JobRecord,
    WorkerRecord,
)

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
KINDS = ("jobs", "dead", "workers")


def parse_age(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"12h"``, ``"7d"`` or ``"2w"`` (a bare number is days)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not match:
        raise CommandError(
            f"--older-than {text!r}: use a number with a unit s, m, h, d or w, e.g. 7d or 12h"
        )
    return timedelta(seconds=float(match.group(1)) * UNITS[match.group(2) or "d"])


class Command(BaseCommand):
    help = (
        "Delete old rows of the job mirror (the broker is not touched): finished jobs, dead "
        "letters and workers whose last heartbeat is older than --older-than. Running and "
        "queued jobs are never deleted."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--older-than",
            default="7d",
            help="Age of the rows to delete: 90s, 15m, 12h, 7d, 2w (default: 7d).",
        )
        parser.add_argument(
            "--status",
            help="Comma-separated job statuses to delete (default: "
            f"{','.join(FINAL_STATUSES)}); only finished statuses are allowed.",
        )
        parser.add_argument(
            "--only",
            help=f"Comma-separated kinds of rows to prune: {', '.join(KINDS)} (default: all).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Print what would be deleted; delete nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        cutoff = timezone.now() - parse_age(options["older_than"])
        kinds = self._split(options["only"], KINDS, "--only") if options["only"] else KINDS
        statuses = (
            self._split(options["status"], FINAL_STATUSES, "--status")
            if options["status"]
            else tuple(FINAL_STATUSES)
        )
        querysets = {
            "jobs": JobRecord.objects.filter(status__in=statuses, updated_at__lt=cutoff),
            "dead": DeadLetterRecord.objects.filter(
                Q(failed_at__lt=cutoff) & (Q(requeued_at__isnull=True) | Q(requeued_at__lt=cutoff))
            ),
            "workers": WorkerRecord.objects.filter(last_heartbeat__lt=cutoff),
        }
        verb = "would delete" if options["dry_run"] else "deleted"
        for kind in KINDS:
            if kind not in kinds:
                continue
            queryset = querysets[kind]
            count = queryset.count() if options["dry_run"] else queryset.delete()[0]
            self.stdout.write(f"{verb} {count} {kind} older than {cutoff:%Y-%m-%d %H:%M:%S %Z}")

    @staticmethod
    def _split(raw: str, allowed: tuple[str, ...], flag: str) -> tuple[str, ...]:
        values = tuple(value.strip() for value in raw.split(",") if value.strip())
        wrong = [value for value in values if value not in allowed]
        if wrong or not values:
            raise CommandError(
                f"{flag}: {', '.join(wrong) or 'nothing given'} is not allowed; "
                f"choose among {', '.join(allowed)}"
            )
        return values
