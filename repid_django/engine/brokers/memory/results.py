"""What ``job.result`` reads on the in-memory broker: the same answers as on Redis.

A stored result wins; else a message that waits, is delayed or runs means not over yet
(``None``); else a dead letter gives its failure; else the job ended with nothing stored (a
success with no data, ``stored=False``). See ``redis/results.py`` for the cases and
:func:`~repid_django.engine.results.unstored` for what reads the same. The broker changes its
state between awaits only, so what this reads is one consistent state.
"""

from __future__ import annotations

import time

from ...results import JobResult, from_dead_letter, unstored
from .state import QueueState, ResultStore


class InMemoryResultsMixin:
    """``job_result`` of :class:`~.broker.InMemoryMessageBroker`."""

    _queues: dict[str, QueueState]
    _results: ResultStore

    async def job_result(self, job_id: str, queue: str = "default") -> JobResult | None:
        stored = self._results.get(job_id)
        if stored is not None:
            return stored
        state = self._queues.get(queue)
        if state is None:
            return unstored(job_id, "", time.time())
        if job_id in state.waiting or job_id in state.running:
            return None
        for letter in state.dead:
            if letter.id == job_id:
                actor = "" if letter.message is None else letter.message.actor
                at = letter.failed_at.timestamp()
                return from_dead_letter(job_id, actor, letter.reason.value, letter.error, at)
        return unstored(job_id, "", time.time())
