"""The Repid engine: jobs, queues, actors, workers and brokers, in pure asyncio.

Nothing in this package imports Django.
"""

from .actor import Actor
from .brokers import (
    DeadLetter,
    DeadReason,
    InMemoryMessageBroker,
    MessageBroker,
    QueueStats,
    ResultBroker,
)
from .brokers.redis.broker import RedisMessageBroker
from .connection import Call, Connection, Repid, get_connection, set_default_connection
from .job import Job, enqueue_many
from .priorities import PrioritiesT
from .queue import Queue
from .results import JobResult
from .retry import RetryPolicyT, default_retry_policy_factory
from .router import Router
from .schedules import Schedule, ScheduleError
from .worker.context import JobContext, current_job, set_progress, set_progress_sync
from .worker.events import EventKind, JobEvent, WorkerInfo, WorkerListener
from .worker.worker import Worker

__all__ = [
    "Actor",
    "Call",
    "Connection",
    "DeadLetter",
    "DeadReason",
    "EventKind",
    "InMemoryMessageBroker",
    "Job",
    "JobContext",
    "JobEvent",
    "JobResult",
    "MessageBroker",
    "PrioritiesT",
    "Queue",
    "QueueStats",
    "RedisMessageBroker",
    "Repid",
    "ResultBroker",
    "RetryPolicyT",
    "Router",
    "Schedule",
    "ScheduleError",
    "Worker",
    "WorkerInfo",
    "WorkerListener",
    "current_job",
    "default_retry_policy_factory",
    "enqueue_many",
    "get_connection",
    "set_default_connection",
    "set_progress",
    "set_progress_sync",
]
