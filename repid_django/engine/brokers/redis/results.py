"""What ``job.result`` reads on Redis: a job's result, with what its queue knows of the job.

A job that stores its result only when useful (``store_result`` auto, the default) leaves
nothing behind when its run returns ``None``, so "no result" alone cannot tell a finished job
from one still waiting. One read-only script on the queue's keys (``lua/peek.lua``: one
Cluster slot, one round trip, read at one instant) tells them apart:

* ``GET <queue>:result:<id>``: a stored result wins (also a recurring job's last run, whose
  next occurrence already waits);
* else ``HEXISTS <queue>:msgs <id>``: the message waits, is delayed, runs or is back for a
  retry: not over yet, ``None``;
* else ``HGET <queue>:dinfo <id>``: a dead letter with no result (its worker was lost, it
  expired, it was undecodable, or the job stores no results): its failure
  (:func:`~repid_django.engine.results.from_dead_letter`);
* else the job ended with nothing stored: a success with no data and ``stored=False``
  (:func:`~repid_django.engine.results.unstored`, which lists the cases that read the same: a
  result expired after ``result_ttl``, a cancelled or flushed message, an id never enqueued).

The finish script writes a result and removes its message in one step, so the snapshot never
sees the message gone before its result. The delivery path pays nothing for this: no marker is
written for a job that stores nothing, and the lookup is the same one round trip as before.
Results stored apart (``store_results``, a separate results broker) are read by ``get_result``.
"""

from __future__ import annotations

import time
from typing import Any

from ...results import JobResult, from_dead_letter, unstored
from ...serializer import loads


class RedisResultsMixin:
    """``job_result`` of :class:`~.broker.RedisMessageBroker` (see the module docstring)."""

    prefix: str

    def _base(self, queue: str) -> str:
        raise NotImplementedError

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        raise NotImplementedError

    def _script_sync(self, name: str, keys: list[str], args: list[Any]) -> Any:
        raise NotImplementedError

    async def job_result(self, job_id: str, queue: str = "default") -> JobResult | None:
        return read(job_id, await self._script("peek", [self._base(queue)], [job_id, 0]))

    def job_result_sync(self, job_id: str, queue: str = "default") -> JobResult | None:
        return read(job_id, self._script_sync("peek", [self._base(queue)], [job_id, 0]))

    async def peek(self, queue: str, job_id: str) -> list[Any]:
        """All that is known of a job, read at one instant (see ``lua/peek.lua``): its result,
        body, lease deadline, dead-letter body and info, ``b""`` where there is none."""
        return list(await self._script("peek", [self._base(queue)], [job_id, 1]))

    def peek_sync(self, queue: str, job_id: str) -> list[Any]:
        """:meth:`peek` for sync code (no event loop)."""
        return list(self._script_sync("peek", [self._base(queue)], [job_id, 1]))


def read(job_id: str, replies: list[Any]) -> JobResult | None:
    """The answer to ``job.result`` from the reply of ``lua/peek.lua`` (see the module
    docstring)."""
    raw, waiting, info = replies
    if raw:
        return JobResult.from_dict(loads(raw))
    if waiting:
        return None
    if not info:
        return unstored(job_id, "", time.time())
    try:
        meta = loads(info)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        meta = {}
    reason, error, failed_at = meta.get("reason"), meta.get("error"), meta.get("failed_at")
    return from_dead_letter(
        job_id,
        "",
        reason if isinstance(reason, str) else "failed",
        error if isinstance(error, str) and error else None,
        float(failed_at) if isinstance(failed_at, int | float) else time.time(),
    )
