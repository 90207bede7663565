"""The queues' depth history: one :class:`~repid_django.models.QueueSample` per queue and
minute, for the live monitor's chart of the last hour.

The mirror writes it with each heartbeat (the depths it has just read from the broker): one
upsert per heartbeat (the minute's last report wins, whichever worker made it), and once a
minute per worker one ``DELETE`` of the samples older than ``SAMPLES_KEPT``, so the table
never grows past a couple of hours of rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..models import SAMPLES_KEPT, QueueSample
from .upsert import conflict_target

SAMPLE_FIELDS = ("ready", "delayed", "running", "dead")


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


class SampleWriter:
    """Writes the samples of one worker's heartbeats (synchronous: the mirror's thread)."""

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._pruned: datetime | None = None

    def write(self, stats: Sequence[dict[str, Any]], at: datetime) -> None:
        """``stats``: the heartbeat's depth rows (``name``, ``ready``, ... as for QueueRecord)."""
        if not stats:
            return
        minute = minute_of(at)
        QueueSample.objects.using(self.using).bulk_create(
            [
                QueueSample(
                    queue=row["name"],
                    minute=minute,
                    **{field: row[field] for field in SAMPLE_FIELDS},
                )
                for row in stats
            ],
            update_conflicts=True,
            unique_fields=conflict_target(self.using, ("queue", "minute")),
            update_fields=SAMPLE_FIELDS,
        )
        if self._pruned != minute:
            self._pruned = minute
            QueueSample.objects.using(self.using).filter(minute__lt=minute - SAMPLES_KEPT).delete()
