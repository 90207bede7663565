"""What ``job.result`` reads on Redis: a job's result, with what its queue knows of the job.

A job that stores its result only when useful (``store_result`` auto, the default) leaves
nothing behind when its run returns ``None``, so "no result" alone cannot tell a finished job
from one still waiting. One ``MULTI`` on the queue's keys (one Cluster slot, one round trip,
read at one instant) tells them apart:

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

import redis
import redis.asyncio as aredis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline

from ...results import JobResult, from_dead_letter, unstored
from ...serializer import loads
from .keys import queue_base, result_key


class RedisResultsMixin:
    """``job_result`` of :class:`~.broker.RedisMessageBroker` (see the module docstring)."""

    prefix: str

    @property
    def client(self) -> aredis.Redis:
        raise NotImplementedError

    @property
    def sync_client(self) -> redis.Redis:
        raise NotImplementedError

    async def job_result(self, job_id: str, queue: str = "default") -> JobResult | None:
        async with self.client.pipeline(transaction=True) as pipe:
            return read(job_id, await _ask(pipe, self.prefix, queue, job_id).execute())

    def job_result_sync(self, job_id: str, queue: str = "default") -> JobResult | None:
        with self.sync_client.pipeline(transaction=True) as pipe:
            return read(job_id, _ask(pipe, self.prefix, queue, job_id).execute())


def _ask[P: (Pipeline, AsyncPipeline)](pipe: P, prefix: str, queue: str, job_id: str) -> P:
    base = queue_base(prefix, queue)
    pipe.get(result_key(prefix, queue, job_id))
    pipe.hexists(f"{base}msgs", job_id)
    pipe.hget(f"{base}dinfo", job_id)
    return pipe


def read(job_id: str, replies: list[Any]) -> JobResult | None:
    """The answer to ``job.result`` from the replies of :func:`_ask` (see the module docstring)."""
    raw, waiting, info = replies
    if raw is not None:
        return JobResult.from_dict(loads(raw))
    if waiting:
        return None
    if info is None:
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
