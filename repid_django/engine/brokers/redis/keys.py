"""Redis key layout of the Redis broker.

Every key starts with the configured prefix and carries a hash tag, so all keys of a queue live
in one Redis Cluster slot and one Lua script can touch them together::

    <prefix>:{<queue>}:ready     zset  id -> (100 - priority) * 2**40 + sequence (strict
                                       priority, then FIFO)
    <prefix>:{<queue>}:delayed   zset  id -> run_at (Unix seconds)
    <prefix>:{<queue>}:msgs      hash  id -> JSON body of every live message (ready, delayed or
                                       running); it is also the unique-id guard
    <prefix>:{<queue>}:pri       hash  id -> priority of a delayed message (a ready one has it
                                       in its score, a running one in its token's score, and
                                       the worker sends it back when it reschedules one)
    <prefix>:{<queue>}:leases    zset  id -> lease deadline (Redis server milliseconds)
    <prefix>:{<queue>}:tokens    hash  id -> "<lease token> <ready score>" of a running message
    <prefix>:{<queue>}:lost      hash  id -> how many leases of the message expired
    <prefix>:{<queue>}:seq       str   FIFO sequence (deleted whenever the queue is empty)
    <prefix>:{<queue>}:wake      list  wake-up tokens that idle workers BLPOP (at most 8)
    <prefix>:{<queue>}:dead      zset  id -> failed_at; bounded and expiring
    <prefix>:{<queue>}:dmsg      hash  id -> body of the dead letter (raw, as stored)
    <prefix>:{<queue>}:dinfo     hash  id -> JSON {reason, error, failed_at, lost}
    <prefix>:{<queue>}:result:<id>  str  JSON result, with a TTL
    <prefix>:{<queue>}:fin:<digest>  str  a finish call's reply (its memo), for finish_memo_ttl
    <prefix>:{<queue>}:clm:<token>   str  the ids a claim leased (its memo), for lease_ttl or
                                          until the claimer's next claim
    <prefix>:{~}:queues          set   registry of declared queues
    <prefix>:{~}:schedules       hash  name -> JSON of a schedule saved by ``Job(cron=...)``
    <prefix>:{<queue>}:sched     hash  schedule name -> last tick handled (Unix seconds)
    <prefix>:{~}:result:<id>     str   results stored apart (``store_results``), with a TTL

Queue names cannot contain ``~`` or braces (see ``queue.validate_queue_name``), so the
registry's tag never collides with a queue's. Scripts get the queue's base
``<prefix>:{<queue>}:`` as their key (which routes them to the queue's slot) and derive the
other names from it.

Per job, the hot scripts touch only what the job needs: an enqueue writes ``msgs`` and
``ready`` (``delayed`` and ``pri`` instead when deferred); a claim pops ``ready``, reads
``msgs`` (one HMGET per batch) and writes ``tokens`` and ``leases`` (one variadic call each per
batch); a finish reads ``tokens`` (one HMGET), writes the result key and removes from ``tokens``,
``leases`` and ``msgs`` with one variadic call per key and batch (from ``lost`` when it exists,
from ``pri`` only when it holds more entries than ``delayed``: left by an older version, which
kept one for every message).

Encodings: Redis keeps small hashes and zsets as listpacks, whose every lookup, insert or
removal scans them whole; a claim or a finish of 100 jobs then makes 100 scans of up to 100
entries. So a claim that creates ``tokens`` and ``leases``, and an enqueue that creates
``ready`` with more entries than the listpack limit anyway, write a long filler entry first and
remove it in the same script: the key is a hash table or a skiplist from the start and stays
one while it exists (the filler is never seen outside the script).
"""

from __future__ import annotations


def queue_base(prefix: str, queue: str) -> str:
    """The common start of every key of ``queue``."""
    return f"{prefix}:{{{queue}}}:"


def registry_key(prefix: str) -> str:
    return f"{prefix}:{{~}}:queues"


def schedules_key(prefix: str) -> str:
    return f"{prefix}:{{~}}:schedules"


def result_key(prefix: str, queue: str, job_id: str) -> str:
    return f"{queue_base(prefix, queue)}result:{job_id}"


def loose_result_key(prefix: str, job_id: str) -> str:
    """Where results written by ``store_results`` (no queue known) are kept."""
    return f"{prefix}:{{~}}:result:{job_id}"


def wake_key(prefix: str, queue: str) -> str:
    return f"{queue_base(prefix, queue)}wake"


QUEUE_PARTS = ("ready", "delayed", "leases", "dead")
"""The zsets whose sizes make up a queue's stats, in ``QueueStats`` order."""
