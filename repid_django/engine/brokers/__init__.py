"""Message brokers: the in-memory one for tests, Redis for everything else."""

from .base import (
    DeadLetter,
    DeadReason,
    Delivery,
    MessageBroker,
    Outcome,
    OutcomeKind,
    QueueStats,
    ResultBroker,
)
from .memory.broker import InMemoryMessageBroker

__all__ = [
    "DeadLetter",
    "DeadReason",
    "Delivery",
    "InMemoryMessageBroker",
    "MessageBroker",
    "Outcome",
    "OutcomeKind",
    "QueueStats",
    "ResultBroker",
]
