"""Live queue depths, as the admin and the monitor show them.

The broker is the source of truth: every declared queue and every mirrored one is read live in
one call over the process's default connection. When the broker does not answer in time, each
queue falls back to its mirrored :class:`~repid_django.models.QueueRecord` (``live`` is false and
``at`` says when a worker last reported it), and the reason is returned with the depths.

These are for synchronous code (admin views, the monitor's snapshot thread).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .engine.brokers.base import MessageBroker, QueueStats
from .engine.connection import get_connection
from .engine.limits import Limits, parse_rate
from .models import QueueRecord

logger = logging.getLogger(__name__)

STATS_TIMEOUT = 2.0
"""Seconds to wait for live depths before the mirrored ones are shown."""


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """A queue's counts, ``live`` from the broker or from the mirrored snapshot of ``at``;
    ``paused`` (see ``ops.pause_queue``) is known only when live (else ``None``)."""

    name: str
    ready: int
    delayed: int
    running: int
    dead: int
    live: bool
    at: datetime | None = None
    paused: bool | None = None
    limits: dict[str | None, Limits] | None = None
    """The limits in force (``{None: the queue's, actor: the actor's}``), known only when
    live (else ``None``)."""

    @property
    def total(self) -> int:
        return self.ready + self.delayed + self.running

    @property
    def limits_summary(self) -> list[tuple[str, str]] | None:
        """What is limited, for a template (see :func:`limits_rows`); ``None``: unknown."""
        return None if self.limits is None else limits_rows(self.limits)


# ---------------------------------------------------------------- limits, as they are shown

_UNITS = {1000: "s", 60_000: "m", 3_600_000: "h", 86_400_000: "d"}


def rate_label(rate: str) -> str:
    """``"100/60s"`` (as the broker gives it back) -> ``"100/m"``."""
    count, window = parse_rate(rate)
    unit = _UNITS.get(window)
    return f"{count}/{unit}" if unit else f"{count}/{window / 1000:g}s"


def limits_data(limits: Limits | None) -> dict[str, Any] | None:
    """JSON of one set of limits (``None``: no limit)."""
    if limits is None or limits.empty:
        return None
    return {
        "concurrency": limits.concurrency,
        "rate": None if limits.rate is None else rate_label(limits.rate),
        "rate_key": limits.rate_key,
    }


def all_limits_data(found: Mapping[str | None, Limits] | None) -> dict[str, Any] | None:
    """``{"queue": ..., "actors": {name: ...}}``, ``None`` when unknown (broker silent)."""
    if found is None:
        return None
    actors = {
        str(who): data
        for who, limits in sorted(found.items(), key=lambda pair: str(pair[0]))
        if who is not None and (data := limits_data(limits)) is not None
    }
    return {"queue": limits_data(found.get(None)), "actors": actors}


def describe(limits: Limits | None) -> str:
    """``"5 at once, 100/m"`` (``"-"``: none)."""
    data = limits_data(limits)
    if data is None:
        return "-"
    parts = []
    if data["concurrency"] is not None:
        parts.append(f"{data['concurrency']} at once")
    if data["rate"] is not None:
        per = f" per {data['rate_key']}" if data["rate_key"] else ""
        parts.append(f"{data['rate']}{per}")
    return ", ".join(parts)


def limits_rows(found: Mapping[str | None, Limits]) -> list[tuple[str, str]]:
    """``[("queue", "5 at once"), (actor, "100/m per customer_id"), ...]``: what is limited."""
    rows = [("queue", describe(found[None]))] if found.get(None) else []
    rows += [
        (str(who), describe(limits))
        for who, limits in sorted(found.items(), key=lambda pair: str(pair[0]))
        if who is not None and not limits.empty
    ]
    return rows


def read_stats(
    names: Iterable[str] | None = None,
    timeout: float = STATS_TIMEOUT,
    *,
    also: Iterable[str] = (),
) -> dict[str, QueueStats]:
    """Live counts of ``names`` (default: every declared queue, and those in ``also``); raises
    when the broker does not answer within ``timeout`` seconds."""
    wanted = None if names is None else list(names)
    more = set(also)

    async def work(broker: MessageBroker) -> dict[str, QueueStats]:
        if wanted is not None:
            queue_names = wanted
        else:
            queue_names = sorted(set(await broker.list_queues()) | more)
        return {name: await broker.queue_stats(name) for name in queue_names}

    connection = get_connection()
    return connection.call(lambda: work(connection.message_broker), timeout=timeout)


def live_stats(
    names: Iterable[str] | None = None, timeout: float = STATS_TIMEOUT
) -> dict[str, QueueStats] | None:
    """Like :func:`read_stats`, but ``None`` when the broker cannot be read."""
    try:
        return read_stats(names, timeout)
    except Exception as exc:  # any failure means "show the snapshot instead"
        logger.warning("live queue depths unavailable: %s", _reason(exc))
        return None


def read_depths(timeout: float = STATS_TIMEOUT) -> tuple[list[QueueDepth], str | None]:
    """Every known queue (declared on the broker or mirrored), by name, and why they are not
    live (``None`` when the broker answered)."""
    records = {record.name: record for record in QueueRecord.objects.all()}
    problem: str | None = None
    try:
        live = read_stats(None, timeout, also=records)
    except Exception as exc:  # any failure means "show the mirrored depths", never a crash
        problem = _reason(exc)
        logger.warning("live queue depths unavailable: %s", problem)
        live = {}
    depths: list[QueueDepth] = []
    for name in sorted(set(records) | set(live)):
        stats = live.get(name)
        if stats is not None:
            depths.append(
                QueueDepth(
                    name,
                    stats.ready,
                    stats.delayed,
                    stats.running,
                    stats.dead,
                    True,
                    paused=stats.paused,
                    limits=dict(stats.limits),
                )
            )
        else:
            rec = records[name]
            depths.append(
                QueueDepth(
                    name, rec.ready, rec.delayed, rec.running, rec.dead, False, rec.updated_at
                )
            )
    return depths, problem


def queue_depths(timeout: float = STATS_TIMEOUT) -> list[QueueDepth]:
    """Every known queue, live when the broker answers (see :func:`read_depths`)."""
    return read_depths(timeout)[0]


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
