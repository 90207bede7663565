"""``runworker --pause QUEUE`` and ``--resume QUEUE``: pause or resume queues and exit.

Not a command of its own (the leading underscore hides it from ``manage.py help``): the
``runworker`` command calls :func:`switch_queues` when given either flag.
"""

from __future__ import annotations

from collections.abc import Sequence

from repid_django import ops
from repid_django.depths import STATS_TIMEOUT
from repid_django.engine.brokers.base import MessageBroker, QueueStats
from repid_django.engine.connection import get_connection
from repid_django.engine.queue import validate_queue_name


def _read(names: Sequence[str]) -> tuple[set[str], dict[str, QueueStats]]:
    """The declared queues and the stats of ``names`` (empty when the broker does not answer:
    the switch itself is done, only the report is shorter)."""

    async def work(broker: MessageBroker) -> tuple[set[str], dict[str, QueueStats]]:
        declared = set(await broker.list_queues())
        return declared, {name: await broker.queue_stats(name) for name in names}

    connection = get_connection()
    try:
        return connection.call(lambda: work(connection.message_broker), timeout=STATS_TIMEOUT)
    except Exception:  # the report is a courtesy: the switch is done
        return set(names), {}


def switch_queues(pause: Sequence[str], resume: Sequence[str]) -> list[str]:
    """Pause the queues of ``pause`` and resume those of ``resume``; lines to print.

    ``ValueError`` for a bad or contradictory name (nothing is done then);
    :class:`~repid_django.ops.BrokerUnavailable` when the broker does not answer.
    """
    for flag, names in (("--pause", pause), ("--resume", resume)):
        for name in names:
            try:
                validate_queue_name(name)
            except ValueError as exc:
                raise ValueError(f"{flag}: {exc}") from None
    both = sorted(set(pause) & set(resume))
    if both:
        raise ValueError(f"queue {both[0]!r} is given to both --pause and --resume")
    for name in dict.fromkeys(pause):
        ops.pause_queue(name)
    for name in dict.fromkeys(resume):
        ops.resume_queue(name)
    names = list(dict.fromkeys([*pause, *resume]))
    declared, stats = _read(names)
    lines = []
    for name in names:
        paused = name in pause
        line = f"{'Paused' if paused else 'Resumed'} queue {name!r}"
        found = stats.get(name)
        if found is not None:
            line += f": {found.ready + found.delayed} waiting, {found.running} running"
        if paused:
            line += " (running jobs finish; workers start none of its jobs until it is resumed)"
        lines.append(line + ".")
        if name not in declared:
            lines.append(
                f"  Note: no queue {name!r} is declared on the broker yet (a typo?); it is "
                f"{'paused' if paused else 'resumed'} all the same."
            )
    return lines
