"""repid_django: fast, reliable background jobs for Django on an async-first Repid engine.

The engine API (``Job``, ``Queue``, ``Router``, ``Worker``, brokers ...) is importable from here;
see README.md. Importing this package does not import Django.
"""

from .engine import (
    Actor,
    Call,
    Connection,
    DeadLetter,
    DeadReason,
    EventKind,
    InMemoryMessageBroker,
    Job,
    JobEvent,
    JobResult,
    MessageBroker,
    PrioritiesT,
    Queue,
    QueueStats,
    RedisMessageBroker,
    Repid,
    ResultBroker,
    RetryPolicyT,
    Router,
    Worker,
    WorkerInfo,
    WorkerListener,
    default_retry_policy_factory,
    enqueue_many,
    get_connection,
    set_default_connection,
)

__version__ = "0.1.0"

__all__ = [
    "Actor",
    "Call",
    "Connection",
    "DeadLetter",
    "DeadReason",
    "EventKind",
    "InMemoryMessageBroker",
    "Job",
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
    "Worker",
    "WorkerInfo",
    "WorkerListener",
    "__version__",
    "default_retry_policy_factory",
    "enqueue_many",
    "get_connection",
    "set_default_connection",
]
