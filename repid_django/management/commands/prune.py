"""``python manage.py prune``: delete old rows of the ORM mirror (see ``--help``).

Rows are deleted in chunks (``--chunk-size`` rows per statement, each its own transaction), so
that pruning millions of rows never holds long locks; progress is printed as it goes
(``repid_django/mirror/retention.py``). Workers do the same by themselves after
``REPID["MIRROR_RETENTION"]``.
"""

from __future__ import annotations

import re
from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from repid_django.mirror.retention import CHUNK, KINDS, delete_in_chunks, old_rows
from repid_django.models import FINAL_STATUSES

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


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
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=CHUNK,
            help=f"Rows deleted per statement (default: {CHUNK}).",
        )
        parser.add_argument("--database", default="default", help="Database alias.")

    def handle(self, *args: Any, **options: Any) -> None:
        cutoff = timezone.now() - parse_age(options["older_than"])
        kinds = self._split(options["only"], KINDS, "--only") if options["only"] else KINDS
        statuses = (
            self._split(options["status"], FINAL_STATUSES, "--status")
            if options["status"]
            else tuple(FINAL_STATUSES)
        )
        chunk = options["chunk_size"]
        if chunk < 1:
            raise CommandError("--chunk-size must be at least 1")
        using = options["database"]
        verb = "would delete" if options["dry_run"] else "deleted"
        when = f"{cutoff:%Y-%m-%d %H:%M:%S %Z}"
        for kind in KINDS:
            if kind not in kinds:
                continue
            model, condition = old_rows(kind, cutoff, statuses)
            if options["dry_run"]:
                count = model._default_manager.db_manager(using).filter(condition).count()
            else:

                def progress(total: int, kind: str = kind) -> None:
                    self.stdout.write(f"  {kind}: {total} deleted so far")
                    self.stdout.flush()

                count, _ = delete_in_chunks(
                    model,
                    condition,
                    using=using,
                    chunk=chunk,
                    progress=progress if options["verbosity"] >= 1 else None,
                )
            self.stdout.write(f"{verb} {count} {kind} older than {when}")

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
